"""The VRD fit / validation split of the layout models (issue 20): a VRD data root whose ``train`` is the first
``--fit`` images (file order) of the official train split and whose ``test`` is the rest of the train split, so
that ``scenegraph-diff preprocess vrd`` on it gives a folder to train on (its ``train``) and to choose sampler
settings on (its ``test`` = validation) without touching the official test split.

    python benchmarks/layout_vrd_split.py [--data-root ../shared/datasets/vrd] [--fit 3600] --output runs/layout/vrd_split_src
    scenegraph-diff preprocess vrd --data-root runs/layout/vrd_split_src --output runs/layout/vrd_fit

The bundled ``layout-vrd`` and the regression baseline of ``benchmarks/results/layout_eval.md`` were trained on
``runs/layout/vrd_fit`` made this way (``--fit 3600``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def split_vrd(data_root: Path, output: Path, fit: int) -> tuple[int, int]:
    """Write ``output/annotations_{train,test}.json`` (first ``fit`` train images / the other train images) and
    copy ``objects.json`` and ``predicates.json``; return the two image counts.

    Raises:
        FileNotFoundError: a VRD file is missing. ValueError: ``fit`` leaves no image on one side.
    """
    for name in ("annotations_train.json", "objects.json", "predicates.json"):
        if not (data_root / name).is_file():
            raise FileNotFoundError(f"no {name} in {data_root}")
    train = json.loads((data_root / "annotations_train.json").read_text(encoding="utf-8"))
    if not isinstance(train, dict):
        raise ValueError(f"{data_root / 'annotations_train.json'} is not a JSON object of images")
    keys = list(train)
    if not 0 < fit < len(keys):
        raise ValueError(f"--fit must be in 1..{len(keys) - 1} (the train split has {len(keys)} images), got {fit}")
    output.mkdir(parents=True, exist_ok=True)
    (output / "annotations_train.json").write_text(json.dumps({k: train[k] for k in keys[:fit]}))
    (output / "annotations_test.json").write_text(json.dumps({k: train[k] for k in keys[fit:]}))
    for name in ("objects.json", "predicates.json"):
        shutil.copy(data_root / name, output / name)
    return fit, len(keys) - fit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets" / "vrd"))
    p.add_argument("--fit", type=int, default=3600, help="train images to fit on (default 3600 of 4000)")
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    try:
        n_fit, n_val = split_vrd(Path(args.data_root), Path(args.output), args.fit)
    except (OSError, ValueError) as e:
        print(f"layout_vrd_split: {e}", file=sys.stderr)
        return 2
    print(f"{args.output}: train (fit) {n_fit} images, test (validation) {n_val} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
