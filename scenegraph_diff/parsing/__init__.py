"""Text -> scene graph parsing.

    >>> from scenegraph_diff import parse
    >>> parse("a red circle to the left of a blue square").triplets()
    [('circle', 'left of', 'square')]

Backends (one per file), all implementing the :class:`Parser` protocol:

- ``"learned"`` — :class:`~.learned.LearnedParser`, a BiLSTM tagger + pairwise relation classifier
  trained on FACTUAL (``python -m scenegraph_diff.parsing.train``), weights bundled under
  ``scenegraph_diff/assets/parser/``;
- ``"accurate"`` — :class:`~.accurate.AccurateParser`, the same tagger heads on the lower four layers of
  all-MiniLM-L6-v2 fine-tuned on FACTUAL (``python -m scenegraph_diff.parsing.train_accurate``), weights
  bundled under ``scenegraph_diff/assets/parser-accurate/``; slower, more accurate; also numpy-only;
- ``"rules"`` — :class:`~.rules.RuleBasedParser`, dependency-free, the fallback when weights are absent.

``backend="auto"`` (the default) picks the learned parser when its weights are present.
Shapes-world captions (SHAPES.md) always map to the canonical graph, whatever the backend. Negated parts
("there is no cat on the mat") are left out of the graph, as FACTUAL does (:mod:`.negation`).

After parsing, for image models and relation models:

- :func:`expand_counts` — "three red circles" as three circle objects (:mod:`.counts`);
- :func:`canonicalize_predicates` — predicates onto a vocabulary: :data:`VRD_PREDICATES`,
  :data:`VG50_PREDICATES`, :data:`SHAPES_PREDICATES` or a user's list (:mod:`.predicates`).
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Iterable

from ..graph.scene_graph import SceneGraph, check_unicode
from .base import Parser
from .rules import RuleBasedParser

__all__ = ["Parser", "RuleBasedParser", "LearnedParser", "AccurateParser", "load_parser", "parse", "parse_batch", "BACKENDS",
           "weights_available", "drop_negated", "expand_counts", "canonicalize_predicates", "match_predicate",
           "PredicateVocabulary", "VRD_PREDICATES", "VG50_PREDICATES", "SHAPES_PREDICATES"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "learned", "accurate", "rules")
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "parser"
ACCURATE_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "parser-accurate"


_LAZY = {"LearnedParser": ".learned", "AccurateParser": ".accurate", "expand_counts": ".counts", "drop_negated": ".negation",
         **dict.fromkeys(["canonicalize_predicates", "match_predicate", "PredicateVocabulary", "VRD_PREDICATES",
                          "VG50_PREDICATES", "SHAPES_PREDICATES"], ".predicates")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_parser(backend: str = "auto", weights: str | None = None) -> Parser:
    """Build a parser.

    Args:
        backend: ``"auto"`` (learned if its weights exist, else rules), ``"learned"``, ``"accurate"``
            (fine-tuned MiniLM: more accurate, ~6x slower) or ``"rules"``.
        weights: folder with ``model.safetensors`` + ``config.json`` for the learned or accurate backend
            (default: the bundled ``assets/parser`` or ``assets/parser-accurate``).

    Raises:
        ValueError: unknown backend.
        FileNotFoundError: ``backend="learned"`` or ``"accurate"`` and no weights.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "rules":
        return RuleBasedParser()
    if backend == "accurate":
        from .accurate import AccurateParser

        return AccurateParser.from_pretrained(weights)
    if backend == "auto" and not weights_available(weights):
        log.info("learned parser weights not found; using the rule-based parser")
        return RuleBasedParser()
    from .learned import LearnedParser

    return LearnedParser.from_pretrained(weights)


def weights_available(weights: str | None = None, backend: str = "learned") -> bool:
    """Whether a backend's weights exist (``weights=None``: the bundled ``assets/parser``, or
    ``assets/parser-accurate`` for ``backend="accurate"``)."""
    default = ACCURATE_WEIGHTS if backend == "accurate" else DEFAULT_WEIGHTS
    folder = Path(weights) if weights is not None else default
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


@functools.lru_cache(maxsize=4)
def _default_parser(backend: str) -> Parser:
    # The one cache in this package: loading weights per call would dominate parse(text).
    return load_parser(backend)


def parse(text: str, backend: str = "auto") -> SceneGraph:
    """Parse one text into a :class:`SceneGraph` (with ``text`` and character spans).

    Only the first :data:`~.tokenize.MAX_CHARS` characters of a longer text are parsed (with a warning).

    Raises:
        TypeError: ``text`` is not a string.
        SceneGraphError: ``text`` is not valid Unicode (a lone surrogate, e.g. from undecodable bytes).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} {text!r:.60}")
    check_unicode(text, "text")
    return _default_parser(backend).parse(text)


def parse_batch(
    texts: Iterable[str], batch_size: int = 256, backend: str = "auto", progress: bool | None = None
) -> list[SceneGraph]:
    """Parse many texts (in order). Batched for the learned backend.

    Args:
        texts: the inputs: a list, or any iterable (an iterator or generator is read once).
        batch_size: texts per forward pass.
        backend: see :func:`load_parser`.
        progress: show a tqdm bar on stderr; ``None`` = only for more than 2,000 texts.

    Raises:
        TypeError: ``texts`` is a single str, or an item is not a str.
        SceneGraphError: an item is not valid Unicode (field ``texts[i]``).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single str (use parse())")
    texts = list(texts)  # an iterator would be used up by the checks below
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__} {t!r:.60}")
        check_unicode(t, f"texts[{i}]")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parser = _default_parser(backend)
    show = len(texts) > 2000 if progress is None else progress
    if not show:
        return parser.parse_batch(texts, batch_size=batch_size)
    from tqdm import tqdm

    out: list[SceneGraph] = []
    chunk = max(batch_size, 1024)
    with tqdm(total=len(texts), desc="parse", unit="text", file=sys.stderr) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i : i + chunk]
            out.extend(parser.parse_batch(part, batch_size=batch_size))
            bar.update(len(part))
    return out
