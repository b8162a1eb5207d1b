"""``load_layout_model``: a bundled layout model by name, or a saved one from its folder."""

from __future__ import annotations

import json
from pathlib import Path

from .base import LayoutModel

__all__ = ["load_layout_model"]


def _classes() -> dict[str, type[LayoutModel]]:
    """The layout model classes by the ``_class_name`` their ``config.json`` carries."""
    from .diffusion import DiffusionLayoutModel
    from .regression import RegressionLayoutModel

    return {c.__name__: c for c in (RegressionLayoutModel, DiffusionLayoutModel)}


def load_layout_model(name_or_dir: str) -> LayoutModel:
    """Load a layout model: a bundled name (``layout-shapes``, ``layout-vrd``; see ``scenegraph-diff models``) or
    a folder written by ``save_pretrained`` (``config.json`` + ``diffusion_pytorch_model.safetensors``).

    The weights are loaded into owned, aligned memory (bit-exact outputs); the model is in eval mode on CPU.

    Raises:
        FileNotFoundError: no such bundled model or folder, or the folder has no ``config.json``.
        ValueError: the folder holds another kind of model.
    """
    from ..bundled import resolve_model

    if not isinstance(name_or_dir, (str, Path)):
        raise TypeError(f"name_or_dir must be a string or path, got {type(name_or_dir).__name__}")
    folder = resolve_model(str(name_or_dir))
    if not isinstance(folder, Path):  # not a bundled name and not a folder: resolve_model passes hub ids through
        raise FileNotFoundError(f"layout model {str(name_or_dir)!r}: not a bundled model and no such folder")
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"layout model {str(name_or_dir)!r}: no config.json in {folder}")
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    except (ValueError, AttributeError):
        raise ValueError(f"layout model {str(name_or_dir)!r}: {config} is not a JSON object") from None
    classes = _classes()
    if name not in classes:
        raise ValueError(f"layout model {str(name_or_dir)!r}: {config} is a {name!r}, not a layout model "
                         f"(expected one of {', '.join(classes)})")
    return classes[name].from_pretrained(folder).eval()
