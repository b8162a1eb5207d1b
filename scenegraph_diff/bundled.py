"""The models bundled in the package (``scenegraph_diff/assets/``), by name.

``scenegraph-diff models`` lists them; every ``--model`` option accepts one of these names as well as a
folder or a Hugging Face hub id. Pure Python: nothing here imports torch.

    from scenegraph_diff.bundled import bundled_models, resolve_model
    [m.name for m in bundled_models()]      # ['sd-shapes', 'shapes'] (those present on disk)
    resolve_model("sd-shapes")              # Path('.../scenegraph_diff/assets/sd-shapes')
    resolve_model("path/to/sd-1.5")         # the folder, unchanged
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BundledModel", "ASSETS", "bundled_models", "resolve_model", "folder_size"]

ASSETS = Path(__file__).resolve().parent / "assets"

#: name -> (sub-folder of ``assets/``, what it is and what it was trained on)
_CATALOGUE: dict[str, tuple[str, str]] = {
    "sd-shapes": ("sd-shapes", "Stable Diffusion (VAE + CLIP text tower + UNet) trained text-only on shapes-world "
                               "captions; 32x32; a StableDiffusionPipeline folder, plus a layout adapter (boxes -> "
                               "T2I-Adapter, trained on rendered scenes with the UNet frozen) in layout_adapter/"),
    "shapes": ("shapes", "ShapesPipeline: layout-painting graph-to-image reference model of the shapes world "
                         "(R-HGNN conditioner + palette UNet), trained on sampled scenes; 32x32"),
    "parser": ("parser", "learned text-to-scene-graph parser (FACTUAL train)"),
    "layout-shapes": ("layout-shapes", "scene graph -> boxes for the shapes world: box diffusion (R-HGNN, DDIM) "
                                       "trained on sampled scenes; load with scenegraph_diff.layout.load_layout_model"),
    "layout-vrd": ("layout-vrd", "scene graph -> boxes for VRD's 100 object classes and 70 predicates: box diffusion "
                                 "(R-HGNN, DDIM) trained on 3,600 of VRD's 4,000 train images' boxes (normalised by "
                                 "the union of each image's boxes; the other 400 for validation)"),
}


@dataclass(frozen=True)
class BundledModel:
    """One bundled model: ``name``, ``folder``, ``size_bytes`` on disk and a one-line ``description``."""

    name: str
    folder: Path
    size_bytes: int
    description: str
    kind: str

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (the folder as a string)."""
        return {"name": self.name, "folder": str(self.folder), "size_bytes": self.size_bytes,
                "kind": self.kind, "description": self.description}


def folder_size(path: Path) -> int:
    """Total size in bytes of the files below ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _kind(folder: Path) -> str:
    index = folder / "model_index.json"
    if index.is_file():
        try:
            return str(json.loads(index.read_text()).get("_class_name", "pipeline"))
        except (OSError, ValueError):
            return "pipeline"
    config = folder / "config.json"  # a single diffusers model (e.g. a layout model)
    if config.is_file():
        try:
            return str(json.loads(config.read_text()).get("_class_name", "module"))
        except (OSError, ValueError, AttributeError):
            return "module"
    return "module"


def bundled_models() -> list[BundledModel]:
    """The bundled models present on disk, in catalogue order."""
    out = []
    for name, (sub, description) in _CATALOGUE.items():
        folder = ASSETS / sub
        if folder.is_dir():
            out.append(BundledModel(name, folder, folder_size(folder), description, _kind(folder)))
    return out


def resolve_model(name_or_path: str) -> str | Path:
    """A bundled model's folder for its name; an existing folder as given; anything else unchanged (a hub id).

    Raises:
        FileNotFoundError: ``name_or_path`` looks like a local path (absolute, ``./``, ``../``, ``~``) but is
            not a folder — so a typo is reported at once instead of as a hub look-up.
    """
    if name_or_path in _CATALOGUE:
        folder = ASSETS / _CATALOGUE[name_or_path][0]
        if not folder.is_dir():
            raise FileNotFoundError(f"bundled model {name_or_path!r} is not installed (no folder {folder})")
        return folder
    path = Path(os.path.expanduser(name_or_path))
    if path.is_dir():
        return path
    # A hub id is "owner/name" (one slash, no leading dot or tilde); anything else that is not a folder is a
    # local path that does not exist.
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or path.exists()
    if looks_local:
        raise FileNotFoundError(f"--model {name_or_path!r}: no such folder (bundled models: "
                                f"{', '.join(_CATALOGUE)})")
    return name_or_path
