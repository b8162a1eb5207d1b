"""``SceneGraph`` <-> PyG ``HeteroData``, and fast batching of many scene graphs.

The schema (the only place in the library that names node and edge types)::

    node types:  object, attribute, relation (one node per relation instance), scene (one per graph)
    edge types:  (object, has, attribute)   an object owns an attribute
                 (object, subj, relation)   the subject of a relation
                 (relation, obj, object)    the object of a relation
                 (object, in, scene), (relation, in, scene), (attribute, in, scene)

Direction carries meaning: subject -> relation -> object. Per node type the stores hold

    x        [n, D] float   label embedding (when an embedder is given; the scene node gets zeros)
    label    [n]    long    vocabulary id (when a vocabulary is given; 0 = unknown)
    names    list[str]      the labels (object names, attributes, predicates); a batch keeps one list per graph
    box      [n, 4] float64 objects only, (x0, y0, x1, y1); zeros where ``has_box`` is False (float64 keeps
                            JSON boxes exact; cast with ``.float()`` for models)
    has_box  [n]    bool    objects only
    span     [n, 2] long    objects and relations; -1 where the graph has no span
and the graph stores ``text`` (a string, "" when absent); ``scene.has_text`` ``[1]`` bool says whether the graph has
text. This is enough to convert back losslessly (and gives every node type a tensor, so PyG's
``InMemoryDataset`` can collate and separate the data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import torch
from torch import Tensor

from .scene_graph import Relation, SceneGraph, SceneGraphError, SceneObject
from .vocab import Vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from torch_geometric.data import HeteroData

__all__ = ["NODE_TYPES", "EDGE_TYPES", "REVERSE_EDGE_TYPES", "with_reverse_edges", "to_hetero_data", "from_hetero_data",
           "collate", "unbatch", "LabelEmbedder"]

OBJECT, ATTRIBUTE, RELATION, SCENE = "object", "attribute", "relation", "scene"
NODE_TYPES: tuple[str, ...] = (OBJECT, ATTRIBUTE, RELATION, SCENE)
HAS = (OBJECT, "has", ATTRIBUTE)
SUBJ = (OBJECT, "subj", RELATION)
OBJ = (RELATION, "obj", OBJECT)
OBJECT_IN = (OBJECT, "in", SCENE)
RELATION_IN = (RELATION, "in", SCENE)
ATTRIBUTE_IN = (ATTRIBUTE, "in", SCENE)
EDGE_TYPES: tuple[tuple[str, str, str], ...] = (HAS, SUBJ, OBJ, OBJECT_IN, RELATION_IN, ATTRIBUTE_IN)
METADATA: tuple[list[str], list[tuple[str, str, str]]] = (list(NODE_TYPES), list(EDGE_TYPES))
#: The reverse of every edge type, ``(dst, "rev_" + rel, src)`` (PyG's ``ToUndirected`` naming): a layer that
#: wants messages against the schema's direction (e.g. a relation's subject hearing from its object) adds these.
#: They are types of their own, so subject and object still play different roles.
REVERSE_EDGE_TYPES: tuple[tuple[str, str, str], ...] = tuple((d, f"rev_{r}", s) for s, r, d in EDGE_TYPES)
METADATA_WITH_REVERSE: tuple[list[str], list[tuple[str, str, str]]] = (list(NODE_TYPES),
                                                                        list(EDGE_TYPES + REVERSE_EDGE_TYPES))


def with_reverse_edges(edge_index_dict: dict[tuple[str, str, str], Tensor]) -> dict[tuple[str, str, str], Tensor]:
    """A new dict: ``edge_index_dict`` plus, for each schema edge type in it, its reverse type with the
    rows of ``edge_index`` ``[2, E]`` swapped (the input is not changed)."""
    out = dict(edge_index_dict)
    for et, rev in zip(EDGE_TYPES, REVERSE_EDGE_TYPES):
        if et in edge_index_dict:
            out[rev] = edge_index_dict[et].flip(0)
    return out


class LabelEmbedder(Protocol):
    """Anything with ``dim`` and ``embed(labels) -> Tensor [n, dim]`` (see :mod:`scenegraph_diff.text`)."""

    dim: int

    def embed(self, labels: Sequence[str]) -> Tensor: ...


def _embed(embedder: LabelEmbedder, labels: list[str]) -> Tensor:
    """Embed with one call for the unique labels, then gather: ``[len(labels), D]``."""
    if not labels:
        return torch.zeros(0, embedder.dim)
    uniq = list(dict.fromkeys(labels))
    pos = {lab: i for i, lab in enumerate(uniq)}
    table = embedder.embed(uniq)
    return table[torch.tensor([pos[lab] for lab in labels], dtype=torch.long)]


def _flatten(graphs: Sequence[SceneGraph]) -> dict:
    """Concatenate the per-graph index lists of a batch (pure Python, one pass)."""
    obj_names: list[str] = []
    attr_names: list[str] = []
    rel_names: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    has_box: list[bool] = []
    obj_span: list[tuple[int, int]] = []
    rel_span: list[tuple[int, int]] = []
    has_src: list[int] = []
    subj: list[int] = []
    obj: list[int] = []
    obj_graph: list[int] = []
    attr_graph: list[int] = []
    rel_graph: list[int] = []
    counts = []  # (objects, attributes, relations) per graph
    no_box = (0.0, 0.0, 0.0, 0.0)
    no_span = (-1, -1)
    for gi, g in enumerate(graphs):
        if not isinstance(g, SceneGraph):
            raise SceneGraphError(f"graphs[{gi}]", f"expected SceneGraph, got {type(g).__name__}")
        o0, a0, r0 = len(obj_names), len(attr_names), len(rel_names)
        for k, o in enumerate(g.objects):
            obj_names.append(o.name)
            boxes.append(o.box if o.box is not None else no_box)
            has_box.append(o.box is not None)
            obj_span.append(o.span if o.span is not None else no_span)
            for a in o.attributes:
                attr_names.append(a)
                has_src.append(o0 + k)
        for r in g.relations:
            rel_names.append(r.predicate)
            rel_span.append(r.span if r.span is not None else no_span)
            subj.append(o0 + r.subject)
            obj.append(o0 + r.object)
        no, na, nr = len(obj_names) - o0, len(attr_names) - a0, len(rel_names) - r0
        obj_graph.extend([gi] * no)
        attr_graph.extend([gi] * na)
        rel_graph.extend([gi] * nr)
        counts.append((no, na, nr))
    return dict(
        obj_names=obj_names, attr_names=attr_names, rel_names=rel_names, boxes=boxes, has_box=has_box,
        obj_span=obj_span, rel_span=rel_span, has_src=has_src, subj=subj, obj=obj,
        obj_graph=obj_graph, attr_graph=attr_graph, rel_graph=rel_graph, counts=counts,
    )


def _fill(data: "HeteroData", f: dict, num_graphs: int, embedder: LabelEmbedder | None, vocab: Vocabulary | None) -> None:
    long = torch.long
    n_obj, n_attr, n_rel = len(f["obj_names"]), len(f["attr_names"]), len(f["rel_names"])
    data[OBJECT].num_nodes = n_obj
    data[ATTRIBUTE].num_nodes = n_attr
    data[RELATION].num_nodes = n_rel
    data[SCENE].num_nodes = num_graphs
    data[OBJECT].names = f["obj_names"]
    data[ATTRIBUTE].names = f["attr_names"]
    data[RELATION].names = f["rel_names"]
    data[OBJECT].box = torch.tensor(f["boxes"], dtype=torch.float64).reshape(n_obj, 4)  # float64: lossless
    data[OBJECT].has_box = torch.tensor(f["has_box"], dtype=torch.bool)
    data[OBJECT].span = torch.tensor(f["obj_span"], dtype=long).reshape(n_obj, 2)
    data[RELATION].span = torch.tensor(f["rel_span"], dtype=long).reshape(n_rel, 2)
    if embedder is not None:
        table = _embed(embedder, f["obj_names"] + f["attr_names"] + f["rel_names"])
        data[OBJECT].x = table[:n_obj]
        data[ATTRIBUTE].x = table[n_obj : n_obj + n_attr]
        data[RELATION].x = table[n_obj + n_attr :]
        data[SCENE].x = torch.zeros(num_graphs, embedder.dim, dtype=table.dtype)
    if vocab is not None:
        data[OBJECT].label = torch.tensor(vocab.indices("object", f["obj_names"]), dtype=long)
        data[ATTRIBUTE].label = torch.tensor(vocab.indices("attribute", f["attr_names"]), dtype=long)
        data[RELATION].label = torch.tensor(vocab.indices("predicate", f["rel_names"]), dtype=long)
    obj_graph = torch.tensor(f["obj_graph"], dtype=long)
    attr_graph = torch.tensor(f["attr_graph"], dtype=long)
    rel_graph = torch.tensor(f["rel_graph"], dtype=long)
    data[HAS].edge_index = torch.stack([torch.tensor(f["has_src"], dtype=long), torch.arange(n_attr)]).reshape(2, n_attr)
    data[SUBJ].edge_index = torch.stack([torch.tensor(f["subj"], dtype=long), torch.arange(n_rel)]).reshape(2, n_rel)
    data[OBJ].edge_index = torch.stack([torch.arange(n_rel), torch.tensor(f["obj"], dtype=long)]).reshape(2, n_rel)
    data[OBJECT_IN].edge_index = torch.stack([torch.arange(n_obj), obj_graph]).reshape(2, n_obj)
    data[RELATION_IN].edge_index = torch.stack([torch.arange(n_rel), rel_graph]).reshape(2, n_rel)
    data[ATTRIBUTE_IN].edge_index = torch.stack([torch.arange(n_attr), attr_graph]).reshape(2, n_attr)


def to_hetero_data(
    graph: SceneGraph, embedder: LabelEmbedder | None = None, vocab: Vocabulary | None = None
) -> "HeteroData":
    """Convert one scene graph to a ``HeteroData`` following the schema above.

    Args:
        graph: the scene graph.
        embedder: optional label embedder; fills ``x`` ``[n, D]`` for every node type.
        vocab: optional vocabulary; fills ``label`` ``[n]`` (0 for unknown labels).
    """
    from torch_geometric.data import HeteroData

    data = HeteroData()
    _fill(data, _flatten([graph]), 1, embedder, vocab)
    # PyG drops attributes set to None, so "no text" is a flag (on the scene node) next to an empty string.
    data.text = graph.text if graph.text is not None else ""
    data[SCENE].has_text = torch.tensor([graph.text is not None])
    return data


def collate(
    graphs: Sequence[SceneGraph], embedder: LabelEmbedder | None = None, vocab: Vocabulary | None = None
) -> "HeteroData":
    """Batch many scene graphs into one PyG ``HeteroDataBatch`` with one ``scene`` node per graph.

    Equivalent to ``Batch.from_data_list([to_hetero_data(g, ...) for g in graphs])`` (same tensors,
    ``batch`` and ``ptr`` vectors, ``num_graphs``) but built in one pass without per-graph ``HeteroData``
    objects, with one embedder call for all distinct labels of the batch.

    Shapes (``G`` graphs, ``No``/``Na``/``Nr`` objects/attributes/relations in total):
        object.x ``[No, D]``, object.batch ``[No]``, scene.x ``[G, D]``, scene.batch ``[G]``, ...
    """
    from torch_geometric.data import Batch, HeteroData

    graphs = list(graphs)
    f = _flatten(graphs)
    num_graphs = len(graphs)
    batch = Batch(_base_cls=HeteroData)
    _fill(batch, f, num_graphs, embedder, vocab)
    batch.text = [g.text if g.text is not None else "" for g in graphs]
    batch[SCENE].has_text = torch.tensor([g.text is not None for g in graphs], dtype=torch.bool)
    # As in PyG's Batch.from_data_list: per-graph lists of strings.
    for nt, key, cnt in ((OBJECT, "obj_names", 0), (ATTRIBUTE, "attr_names", 1), (RELATION, "rel_names", 2)):
        flat, out, i = f[key], [], 0
        for c in f["counts"]:
            out.append(flat[i : i + c[cnt]])
            i += c[cnt]
        batch[nt].names = out
    long = torch.long
    counts = torch.tensor(f["counts"], dtype=long).reshape(num_graphs, 3)
    zero = torch.zeros(1, dtype=long)
    ptr_obj = torch.cat([zero, counts[:, 0].cumsum(0)])
    ptr_attr = torch.cat([zero, counts[:, 1].cumsum(0)])
    ptr_rel = torch.cat([zero, counts[:, 2].cumsum(0)])
    ptr_scene = torch.arange(num_graphs + 1, dtype=long)
    ptrs = {OBJECT: ptr_obj, ATTRIBUTE: ptr_attr, RELATION: ptr_rel, SCENE: ptr_scene}
    batch[OBJECT].batch = torch.tensor(f["obj_graph"], dtype=long)
    batch[ATTRIBUTE].batch = torch.tensor(f["attr_graph"], dtype=long)
    batch[RELATION].batch = torch.tensor(f["rel_graph"], dtype=long)
    batch[SCENE].batch = torch.arange(num_graphs, dtype=long)
    for nt, ptr in ptrs.items():
        batch[nt].ptr = ptr
    # Bookkeeping that lets PyG's ``batch.get_example(i)`` / ``to_data_list()`` separate the batch again.
    slice_dict: dict = {"text": torch.arange(num_graphs + 1)}
    inc_dict: dict = {"text": None}
    for nt in NODE_TYPES:
        store = batch[nt]
        slice_dict[nt], inc_dict[nt] = {}, {}
        for key in store.keys():
            if key in ("batch", "ptr", "num_nodes"):
                continue
            slice_dict[nt][key] = ptrs[nt] if isinstance(store[key], Tensor) else ptr_scene
            inc_dict[nt][key] = torch.zeros(num_graphs, dtype=long) if isinstance(store[key], Tensor) else None
    # Every edge type has exactly one edge per node of one endpoint type: that type's ptr slices it.
    edges_per = {HAS: ATTRIBUTE, SUBJ: RELATION, OBJ: RELATION, OBJECT_IN: OBJECT, RELATION_IN: RELATION,
                 ATTRIBUTE_IN: ATTRIBUTE}
    for et in EDGE_TYPES:
        src, _, dst = et
        slice_dict[et] = {"edge_index": ptrs[edges_per[et]]}
        inc_dict[et] = {"edge_index": torch.stack([ptrs[src][:-1], ptrs[dst][:-1]], dim=1).unsqueeze(-1)}
    batch._slice_dict = slice_dict
    batch._inc_dict = inc_dict
    batch._num_graphs = num_graphs
    return batch


def _graph_from_stores(data: "HeteroData", text: str | None, o_rng: tuple[int, int], a_rng: tuple[int, int],
                       r_rng: tuple[int, int]) -> SceneGraph:
    o0, o1 = o_rng
    a0, a1 = a_rng
    r0, r1 = r_rng
    obj, attr, rel = data[OBJECT], data[ATTRIBUTE], data[RELATION]
    for nt in (OBJECT, ATTRIBUTE, RELATION):
        if "names" not in data[nt]:
            raise SceneGraphError(f"{nt}.names", "missing: the HeteroData was not made by to_hetero_data")
    obj_names, attr_names, rel_names = obj.names, attr.names, rel.names
    # A batch keeps one list of names per graph (as PyG's collate does): flatten to node order.
    if obj_names and isinstance(obj_names[0], list) or attr_names and isinstance(attr_names[0], list) \
            or rel_names and isinstance(rel_names[0], list):
        obj_names = [x for xs in obj_names for x in xs]
        attr_names = [x for xs in attr_names for x in xs]
        rel_names = [x for xs in rel_names for x in xs]
    has = data[HAS].edge_index
    owner = has[0, a0:a1].tolist()
    attrs: list[list[str]] = [[] for _ in range(o1 - o0)]
    for j, own in enumerate(owner):
        if not o0 <= own < o1:
            raise SceneGraphError(f"{HAS}.edge_index", f"attribute {a0 + j} owned by object {own} outside its graph")
        attrs[own - o0].append(attr_names[a0 + j])
    boxes = obj.box[o0:o1].tolist() if "box" in obj else [None] * (o1 - o0)
    has_box = obj.has_box[o0:o1].tolist() if "has_box" in obj else [False] * (o1 - o0)
    ospan = obj.span[o0:o1].tolist() if "span" in obj else [[-1, -1]] * (o1 - o0)
    objects = tuple(
        SceneObject(obj_names[o0 + i], tuple(attrs[i]), tuple(boxes[i]) if has_box[i] else None,
                    tuple(ospan[i]) if ospan[i][0] >= 0 else None)
        for i in range(o1 - o0)
    )
    subj_ei, obj_ei = data[SUBJ].edge_index, data[OBJ].edge_index
    subj_of = dict(zip(subj_ei[1].tolist(), subj_ei[0].tolist()))
    obj_of = dict(zip(obj_ei[0].tolist(), obj_ei[1].tolist()))
    rspan = rel.span[r0:r1].tolist() if "span" in rel else [[-1, -1]] * (r1 - r0)
    relations = []
    for k in range(r0, r1):
        if k not in subj_of or k not in obj_of:
            raise SceneGraphError(f"relation[{k}]", "needs exactly one subj and one obj edge")
        sp = rspan[k - r0]
        relations.append(Relation(subj_of[k] - o0, rel_names[k], obj_of[k] - o0, tuple(sp) if sp[0] >= 0 else None))
    return SceneGraph(objects, tuple(relations), text)


def from_hetero_data(data: "HeteroData") -> SceneGraph:
    """Inverse of :func:`to_hetero_data` (needs the ``names`` stores it writes)."""
    def count(nt: str) -> int:
        names = data[nt].names if "names" in data[nt] else []
        return sum(len(x) for x in names) if names and isinstance(names[0], list) else len(names)

    n_o, n_a, n_r = count(OBJECT), count(ATTRIBUTE), count(RELATION)
    text = data.text if "text" in data and bool(data[SCENE].has_text.reshape(-1)[0]) else None
    if isinstance(text, list):  # a one-graph slice of a batch
        text = text[0]
    return _graph_from_stores(data, text, (0, n_o), (0, n_a), (0, n_r))


def unbatch(batch: "HeteroData") -> list[SceneGraph]:
    """Inverse of :func:`collate`: the list of scene graphs in a batch."""
    ptr = {nt: batch[nt].ptr.tolist() for nt in (OBJECT, ATTRIBUTE, RELATION)}
    has = batch[SCENE].has_text.tolist()
    texts = [t if h else None for t, h in zip(batch.text, has)]
    return [
        _graph_from_stores(batch, texts[i], (ptr[OBJECT][i], ptr[OBJECT][i + 1]),
                           (ptr[ATTRIBUTE][i], ptr[ATTRIBUTE][i + 1]), (ptr[RELATION][i], ptr[RELATION][i + 1]))
        for i in range(len(ptr[OBJECT]) - 1)
    ]
