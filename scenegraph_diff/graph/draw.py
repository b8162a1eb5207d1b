"""Draw a scene graph to PNG: objects (with attributes) as boxes, relations as labelled ellipses, arrows
subject -> relation -> object (:func:`draw`); or its layout: every object's ``box`` on the canvas with its
label, relations as labelled arrows from the subject's box to the object's (:func:`draw_layout`).
matplotlib is imported lazily (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from .scene_graph import SceneGraph

__all__ = ["draw", "layout", "draw_layout"]


def layout(graph: SceneGraph, seed: int = 0) -> dict[tuple[str, int], tuple[float, float]]:
    """Deterministic positions for object nodes ``("o", i)`` and relation nodes ``("r", k)``."""
    g = nx.DiGraph()
    for i in range(graph.num_objects):
        g.add_node(("o", i))
    for k, r in enumerate(graph.relations):
        g.add_edge(("o", r.subject), ("r", k))
        g.add_edge(("r", k), ("o", r.object))
    if g.number_of_nodes() == 0:
        return {}
    if g.number_of_nodes() == 1:
        return {n: (0.0, 0.0) for n in g.nodes}
    pos = nx.spring_layout(g, seed=seed, k=1.5 / max(1, g.number_of_nodes()) ** 0.5, iterations=200)
    return {n: (float(x), float(y)) for n, (x, y) in pos.items()}


def draw(graph: SceneGraph, path: str | Path | None = None, dpi: int = 100, title: str | None = None) -> Any:
    """Render ``graph``; save to ``path`` (PNG) when given. Returns the matplotlib figure (closed if saved).

    Labels are drawn as plain text (a ``$`` in a label is not mathtext).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    pos = layout(graph)
    n = graph.num_objects + graph.num_relations
    size = min(12.0, 3.0 + 0.6 * n ** 0.5 * 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.75), dpi=dpi)
    ax.set_axis_off()
    caption = title if title is not None else graph.text
    if caption:
        ax.set_title(caption if len(caption) < 90 else caption[:87] + "...", fontsize=9, parse_math=False)
    if not pos:
        ax.text(0.5, 0.5, "(empty graph)", ha="center", va="center", transform=ax.transAxes, color="grey")
    texts = {}
    for i, o in enumerate(graph.objects):
        label = o.name + (f"\n({', '.join(o.attributes)})" if o.attributes else "")
        x, y = pos[("o", i)]
        texts[("o", i)] = ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3, parse_math=False,
                                  bbox=dict(boxstyle="round,pad=0.4", fc="#dbe9f6", ec="#3b6ea5"))
    for k, r in enumerate(graph.relations):
        x, y = pos[("r", k)]
        texts[("r", k)] = ax.text(x, y, r.predicate, ha="center", va="center", fontsize=8, zorder=3, style="italic",
                                  parse_math=False,
                                  bbox=dict(boxstyle="ellipse,pad=0.3", fc="#fbe5c8", ec="#c07a1e"))
    for k, r in enumerate(graph.relations):
        for a, b in ((("o", r.subject), ("r", k)), (("r", k), ("o", r.object))):
            ax.add_patch(FancyArrowPatch(pos[a], pos[b], arrowstyle="-|>", mutation_scale=12, color="#555555",
                                         shrinkA=14, shrinkB=14, zorder=2, connectionstyle="arc3,rad=0.08"))
    if pos:
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        pad = 0.35
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
    return fig


#: box colours of :func:`draw_layout`, cycled by object index (matplotlib's tab10)
_BOX_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf")


def draw_layout(graph: SceneGraph, path: str | Path | None = None, dpi: int = 100, title: str | None = None,
                ax: Any = None) -> Any:
    """Draw ``graph``'s layout: each object's box (``[x0, y0, x1, y1]`` on the unit canvas, y downwards) with its
    name and attributes, and each relation as an arrow from the subject's box centre to the object's, labelled
    with the predicate. Every object needs a box.

    Args:
        path: save a PNG there (the figure is then closed).
        title: the axes title (default: the graph's text).
        ax: draw into this matplotlib axes instead of a new figure (``path`` must then be ``None``).

    Returns:
        The matplotlib figure.

    Raises:
        SceneGraphError: an object has no box (``objects[i].box``).
    """
    from .scene_graph import SceneGraphError

    for i, o in enumerate(graph.objects):
        if o.box is None:
            raise SceneGraphError(f"objects[{i}].box", f"missing: {o.name!r} has no box to draw "
                                                       "(fill boxes with scenegraph-diff layout)")
    if ax is not None and path is not None:
        raise ValueError("draw_layout: give either ax or path, not both")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=dpi)
    fig = ax.figure
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)  # image coordinates: y grows downwards
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    caption = title if title is not None else graph.text
    if caption:
        ax.set_title(caption if len(caption) < 60 else caption[:57] + "...", fontsize=8, parse_math=False)
    centres = []
    for i, o in enumerate(graph.objects):
        x0, y0, x1, y1 = o.box  # type: ignore[misc]
        colour = _BOX_COLOURS[i % len(_BOX_COLOURS)]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=True, fc=colour + "22", ec=colour, lw=1.5, zorder=1))
        label = f"{i}: " + " ".join([*o.attributes, o.name])
        ax.text(x0 + 0.01, y0 + 0.01, label, ha="left", va="top", fontsize=7, color=colour, zorder=4, parse_math=False,
                bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7))
        centres.append(((x0 + x1) / 2, (y0 + y1) / 2))
    for r in graph.relations:
        a, b = centres[r.subject], centres[r.object]
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color="#333333", lw=1.0, zorder=3,
                                     shrinkA=2, shrinkB=2, connectionstyle="arc3,rad=0.1"))
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, r.predicate, ha="center", va="center", fontsize=7, zorder=5,
                style="italic", parse_math=False,
                bbox=dict(boxstyle="round,pad=0.2", fc="#fbe5c8", ec="#c07a1e", alpha=0.9))
    if own and path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
    return fig
