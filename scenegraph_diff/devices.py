"""Device selection and device-safe random draws, shared by every entry point.

* :func:`check_device` validates a device *string* (config ``__post_init__``: no CUDA query);
  :func:`resolve_device` turns it into a :class:`torch.device` and fails when CUDA is asked for but absent.
* :func:`randn`, :func:`rand`, :func:`randint` and :func:`multinomial` draw with a
  :class:`torch.Generator` on *the generator's* device and move the result to the target device. A CPU
  generator therefore gives the same numbers whether the model runs on CPU or CUDA (and on CPU the result
  is bit-identical to a plain ``torch.randn(..., generator=g)``); a CUDA generator draws on CUDA.
  Without a generator they draw from the global RNG of the target device.

torch is imported inside the functions that use it, so :func:`check_device` (run by config
``__post_init__`` s) stays torch-free: a command can check its arguments before paying for the import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["DEVICE_CHOICES", "check_device", "resolve_device", "module_device", "ModelOnDevice", "randn", "rand",
           "randint", "multinomial"]

#: what a ``device`` setting accepts (plus ``cuda:N``)
DEVICE_CHOICES = ("cpu", "cuda", "auto")


def check_device(device: str, name: str = "device") -> str:
    """Validate the *form* of a device string (``cpu``, ``cuda``, ``cuda:N`` or ``auto``); return it.

    Raises:
        ValueError: naming ``name`` and the bad value.
    """
    torch_module = sys.modules.get("torch")  # a torch.device can only exist once torch is imported
    if torch_module is not None and isinstance(device, torch_module.device):
        device = str(device)
    ok = isinstance(device, str) and (device in DEVICE_CHOICES or (
        device.startswith("cuda:") and device[5:].isdigit()))
    if not ok:
        raise ValueError(f"{name}={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


def resolve_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"``/``"cuda:N"`` need CUDA.

    Raises:
        ValueError: the string is not a device (names ``name`` and the value).
        RuntimeError: CUDA is asked for but not available (names ``name`` and the value).
    """
    import torch

    device = check_device(device, name)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"{name}={device!r} but CUDA is not available (use 'cpu' or 'auto')")
        index = int(device[5:]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"{name}={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter (or buffer); CPU for a module without tensors."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    import torch

    return torch.device("cpu")


_T = TypeVar("_T", bound="ModelOnDevice")


class ModelOnDevice:
    """Mixin for samplers that hold their network in ``self.model``: ``.device`` and ``.to(device)``."""

    model: torch.nn.Module

    @property
    def device(self) -> torch.device:
        """Device of the network (sampling runs there; a CPU ``torch.Generator`` still works)."""
        return module_device(self.model)

    def to(self: _T, device: torch.device | str) -> _T:
        """Move the network to ``device`` (in place); returns ``self``."""
        self.model.to(device)
        return self


def _where(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device | str | None:
    return generator.device if generator is not None else device


def randn(shape: Sequence[int], generator: torch.Generator | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal ``shape`` tensor on ``device``, drawn on the generator's device (see the module doc)."""
    import torch

    out = torch.randn(tuple(shape), generator=generator, device=_where(generator, device), dtype=dtype)
    return out if device is None else out.to(device)


def rand(shape: Sequence[int], generator: torch.Generator | None = None, device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Tensor:
    """Uniform ``[0, 1)`` ``shape`` tensor on ``device``, drawn on the generator's device."""
    import torch

    out = torch.rand(tuple(shape), generator=generator, device=_where(generator, device), dtype=dtype)
    return out if device is None else out.to(device)


def randint(low: int, high: int, shape: Sequence[int], generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> Tensor:
    """Integers in ``[low, high)`` (``int64``) on ``device``, drawn on the generator's device."""
    import torch

    out = torch.randint(low, high, tuple(shape), generator=generator, device=_where(generator, device))
    return out if device is None else out.to(device)


def multinomial(probs: Tensor, num_samples: int, replacement: bool = False,
                generator: torch.Generator | None = None) -> Tensor:
    """``torch.multinomial`` of ``probs [..., K]`` drawn on the generator's device; result on ``probs.device``."""
    import torch

    src = probs if generator is None else probs.to(generator.device)
    return torch.multinomial(src, num_samples, replacement=replacement, generator=generator).to(probs.device)
