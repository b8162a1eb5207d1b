#!/usr/bin/env python
"""Write a synthetic Visual Genome folder (official JSON layout) of a given size.

    python benchmarks/make_synthetic_vg.py --out /tmp/vg_1g --size-gb 1.05 [--with-objects]

``relationships.json`` reaches at least ``--size-gb`` GB (10^9 bytes); ``image_data.json`` is always
written, ``objects.json`` / ``attributes.json`` with ``--with-objects``. Streaming: no memory cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenegraph_diff.data.synthetic import write_synthetic_vg


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--size-gb", type=float, help="target size of relationships.json in GB (1e9 bytes)")
    g.add_argument("--images", type=int, help="number of images")
    p.add_argument("--with-objects", action="store_true", help="also write objects.json and attributes.json")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t = time.perf_counter()
    counts = write_synthetic_vg(args.out, num_images=args.images,
                                target_bytes=int(args.size_gb * 1e9) if args.size_gb else None,
                                seed=args.seed, with_objects=args.with_objects)
    counts["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
