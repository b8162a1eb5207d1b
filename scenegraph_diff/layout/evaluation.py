"""Scores of predicted layouts on the shapes world, with the world's own rules (SHAPES.md).

Boxes are turned into the world's integer pixel boxes (:meth:`~scenegraph_diff.shapes.world.Box.from_fractions`)
on a ``size`` canvas, then judged as the checker judges images: relations on the shapes' centroids with the
``0.08 * size`` margin (:func:`~scenegraph_diff.shapes.world.relation_holds`), and the full layout rule
(:func:`~scenegraph_diff.shapes.world.layout_satisfies`: inside the canvas, no two boxes touching, every relation).
"""

from __future__ import annotations

from typing import Sequence

from ..graph.scene_graph import SceneGraph

__all__ = ["shapes_layout_scores"]


def shapes_layout_scores(graphs: Sequence[SceneGraph], size: int = 32) -> dict[str, float]:
    """Relation consistency of shapes-world graphs whose objects all have boxes.

    Returns:
        ``relation_accuracy`` (named relations that hold / named relations), ``graph_relation_accuracy``
        (graphs with >= 1 relation where every relation holds), ``layout_valid`` (graphs whose layout
        satisfies :func:`~scenegraph_diff.shapes.world.layout_satisfies`), ``side_in_range`` (boxes whose side
        lies in the world's 7-11 px at 32 px range), and the counts ``graphs``, ``relations``.

    Raises:
        ValueError: an object without a box (names the graph and object).
    """
    from ..shapes.world import Box, centroid, layout_satisfies, relation_holds, side_range, validate_shapes_graph

    lo, hi = side_range(size)
    held = named = graphs_rel = graphs_ok = valid = sides_ok = boxes = 0
    for gi, g in enumerate(graphs):
        validate_shapes_graph(g)
        layout = []
        for i, o in enumerate(g.objects):
            if o.box is None:
                raise ValueError(f"graphs[{gi}].objects[{i}] has no box")
            layout.append(Box.from_fractions(o.box, size))
        cents = [centroid(o.name, b) for o, b in zip(g.objects, layout)]
        ok = [relation_holds(r.predicate, cents[r.subject], cents[r.object], size) for r in g.relations]
        held += sum(ok)
        named += len(ok)
        if ok:
            graphs_rel += 1
            graphs_ok += all(ok)
        valid += layout_satisfies(g, layout, size)
        sides_ok += sum(lo <= b.side <= hi for b in layout)
        boxes += len(layout)
    n = len(graphs)
    return {"relation_accuracy": held / max(named, 1), "graph_relation_accuracy": graphs_ok / max(graphs_rel, 1),
            "layout_valid": valid / max(n, 1), "side_in_range": sides_ok / max(boxes, 1), "graphs": float(n),
            "relations": float(named)}
