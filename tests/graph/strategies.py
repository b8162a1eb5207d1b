"""Hypothesis strategies for random scene graphs (shared by the graph tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from scenegraph_diff.graph import Relation, SceneGraph, SceneObject

# Unicode labels: any printable text with at least one non-space character (emoji, CJK, accents, ...).
label = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(lambda s: s.strip() != "")
small_label = st.sampled_from(["cat", "dog", "on", "red", "left of", "chien", "猫", "😺", "sit on", "Ünïcode"])
box = st.tuples(st.floats(0, 0.49), st.floats(0, 0.49), st.floats(0.5, 1.0), st.floats(0.5, 1.0))


@st.composite
def scene_graphs(draw, max_objects: int = 200, max_relations: int = 300, spans: bool = True) -> SceneGraph:
    n = draw(st.integers(0, max_objects))
    # Repeated names are common in real data: draw names from a small pool half of the time.
    names = st.one_of(small_label, label)
    text = draw(st.one_of(st.none(), st.text(min_size=0, max_size=40)))

    def span():
        if not spans or text is None:
            return None
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, len(text)))
        return draw(st.one_of(st.none(), st.just((a, b))))

    objects = tuple(
        SceneObject(draw(names), tuple(draw(st.lists(names, max_size=3))), draw(st.one_of(st.none(), box)), span())
        for _ in range(n)
    )
    relations = []
    if n >= 2:
        m = draw(st.integers(0, min(max_relations, 3 * n)))
        for _ in range(m):
            s = draw(st.integers(0, n - 1))
            o = draw(st.integers(0, n - 2))
            o = o + 1 if o >= s else o  # never a self-relation
            relations.append(Relation(s, draw(names), o, span()))
    return SceneGraph(objects, tuple(relations), text)
