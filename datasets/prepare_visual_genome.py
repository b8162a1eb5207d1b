#!/usr/bin/env python
"""Prepare visual_genome as SceneGraph JSONL shards: `python datasets/prepare_visual_genome.py --help`.

Same as `scenegraph-diff preprocess visual-genome ...`; re-run the same command to resume after a crash.
Exit code 0: every record used; 1: malformed records were skipped (OUT/skipped.txt); 2: error.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from scenegraph_diff.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", "visual-genome", *sys.argv[1:]]))
