"""A trivial, deterministic stand-in for ``scenegraph_diff.parse_batch`` (tests only).

``"a cat on a mat"`` -> ``cat --on--> mat``; otherwise one object, the last word. A text containing
``CRASH`` raises (to test per-record failure handling). ``STANDIN_DELAY`` (seconds per text) slows it
down so a test can kill a run midway.
"""

from __future__ import annotations

import os
import time

from scenegraph_diff.graph import SceneGraph


def parse_batch(texts, **kwargs):
    delay = float(os.environ.get("STANDIN_DELAY", "0"))
    out = []
    for t in texts:
        if "CRASH" in t:
            raise ValueError(f"cannot parse {t!r}")
        if delay:
            time.sleep(delay)
        words = [w.strip(",.").lower() for w in t.split() if w.strip(",.")]
        if "on" in words[1:-1]:
            i = words.index("on")
            out.append(SceneGraph.from_triplets([(words[i - 1], "on", words[-1])], text=t))
        else:
            out.append(SceneGraph.from_triplets([], objects=[words[-1]], text=t))
    return out
