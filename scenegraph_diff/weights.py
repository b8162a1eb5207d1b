"""Loaded weights in owned, aligned memory, so that a loaded model computes exactly what the saved one did.

``safetensors`` (and so every ``from_pretrained`` of diffusers and transformers) hands out tensors that are
views of the memory-mapped file, at whatever address the file layout gives them (``data_ptr() % 64`` of
44, 48, 20, ... is common). They are bit-equal to the saved weights, but vectorised CPU kernels (AVX2, MKL)
pick different code paths for misaligned operands, and the forward pass then differs from the saved
module's by ~1e-8. Copying the weights into memory allocated for them at a 64-byte boundary makes it
bit-identical again.

* :func:`align_weights_` — moves every parameter and buffer of a module (or of every module component of
  a diffusers pipeline) that is not in owned, aligned memory into a fresh aligned copy, in place;
* :class:`AlignedLoadingMixin` — ``from_pretrained`` then :func:`align_weights_`; put it before
  :class:`~diffusers.ModelMixin` in the bases of a model;
* :func:`aligned_empty_like` / :func:`aligned_array` — the aligned allocations themselves (torch / numpy).

Alignment is checked, not assumed: an allocator that returns a misaligned block (a custom or debugging
allocator) gets an over-allocated block and a view at its first aligned element.

Importing this module does not import torch (the numpy parser uses :func:`aligned_array` and loads in ~0.1 s).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

__all__ = ["ALIGNMENT", "is_aligned", "owns_memory", "aligned_empty_like", "aligned_array", "align_weights_",
           "AlignedLoadingMixin"]

logger = logging.getLogger(__name__)

#: bytes; the widest vector loads of current CPUs (AVX-512) and PyTorch's own CPU allocator alignment
ALIGNMENT = 64

_T = TypeVar("_T")


def _check_alignment(alignment: int) -> None:
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a positive power of two (bytes), got {alignment!r}")


def is_aligned(tensor: Tensor, alignment: int = ALIGNMENT) -> bool:
    """``True`` when the first element of ``tensor`` (any shape) sits at a multiple of ``alignment`` bytes."""
    _check_alignment(alignment)
    return tensor.data_ptr() % alignment == 0


def owns_memory(tensor: Tensor) -> bool:
    """``True`` when ``tensor``'s storage was allocated by PyTorch (resizable), ``False`` for external memory:
    a memory-mapped file (safetensors), a numpy array or bytes object (``torch.from_numpy``,
    ``torch.frombuffer``), a DLPack capsule."""
    return bool(tensor.untyped_storage().resizable())


def aligned_empty_like(tensor: Tensor, alignment: int = ALIGNMENT) -> Tensor:
    """An uninitialised tensor like ``tensor`` (shape, strides when dense, dtype, device) in new memory whose
    first element sits at a multiple of ``alignment`` bytes, whatever the allocator returns.

    Raises:
        ValueError: ``alignment`` is not a power of two, or smaller than the element size.
        RuntimeError: the allocator returned an address that is not even a multiple of the element size.
    """
    import torch

    _check_alignment(alignment)
    size = tensor.element_size()
    if alignment < size:
        raise ValueError(f"alignment {alignment} is smaller than the {size}-byte elements of {tensor.dtype}")
    out = torch.empty_like(tensor, memory_format=torch.preserve_format)
    if out.data_ptr() % alignment == 0:
        return out
    # Over-allocate by one alignment and start at the first aligned element; the strides of `out` are dense,
    # so its elements span exactly `numel` slots from there.
    flat = torch.empty(out.numel() + alignment // size, dtype=out.dtype, device=out.device)
    shift = -flat.data_ptr() % alignment
    if shift % size:
        raise RuntimeError(f"the allocator returned address {flat.data_ptr():#x}, not a multiple of the "
                           f"{size}-byte elements of {tensor.dtype}")
    return flat.as_strided(out.size(), out.stride(), shift // size)


def aligned_array(array: np.ndarray, dtype: Any = None, alignment: int = ALIGNMENT) -> np.ndarray:
    """A C-contiguous copy of ``array`` (cast to ``dtype``, default its own) in new memory whose first element
    sits at a multiple of ``alignment`` bytes (numpy's allocator only promises 16)."""
    _check_alignment(alignment)
    dtype = np.dtype(array.dtype if dtype is None else dtype)
    nbytes = array.size * dtype.itemsize
    buf = np.empty(nbytes + alignment, dtype=np.uint8)
    shift = -buf.ctypes.data % alignment
    out = buf[shift : shift + nbytes].view(dtype).reshape(array.shape)
    np.copyto(out, array, casting="same_kind")
    return out


def _modules(target: Any) -> Iterator["torch.nn.Module"]:
    import torch

    if isinstance(target, torch.nn.Module):
        yield target
        return
    components = getattr(target, "components", None)
    if not isinstance(components, dict):
        raise TypeError(f"align_weights_ takes a torch.nn.Module or a diffusers pipeline, got "
                        f"{type(target).__name__}")
    for component in components.values():
        if isinstance(component, torch.nn.Module):
            yield component


def align_weights_(target: _T, alignment: int = ALIGNMENT) -> _T:
    """Give every parameter and buffer of ``target`` owned memory at a multiple of ``alignment`` bytes, in place.

    A tensor that already :func:`owns_memory` at an aligned address is left alone (so calling this twice costs
    nothing); any other is copied into :func:`aligned_empty_like` memory and swapped in with ``.data =``, so the
    ``Parameter`` objects, their ``requires_grad``, optimizers' references and tied weights (one parameter
    registered twice) are kept, as are tensors that alias each other exactly (views of one storage at
    different offsets get separate copies). Values are copied bit for bit. Meta tensors (offloaded or not yet
    materialised), sparse tensors and tensor subclasses (quantised weights, DTensors) are skipped.

    Args:
        target: a :class:`torch.nn.Module`, or a diffusers pipeline (every module in ``target.components``).
        alignment: bytes, a power of two (default :data:`ALIGNMENT` = 64).

    Returns:
        ``target``.
    """
    import torch

    _check_alignment(alignment)
    seen: set[int] = set()
    copies: dict[tuple[Any, ...], Tensor] = {}
    moved = 0
    for module in _modules(target):
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            data = tensor.data
            if type(data) is not torch.Tensor or data.is_meta or data.is_quantized or data.layout != torch.strided:
                continue
            if owns_memory(data) and data.data_ptr() % alignment == 0:
                continue
            key = (data.device, data.dtype, data.untyped_storage().data_ptr(), data.storage_offset(),
                   tuple(data.shape), data.stride())
            if key not in copies:
                with torch.no_grad():
                    copies[key] = aligned_empty_like(data, alignment).copy_(data)
                moved += 1
            tensor.data = copies[key]
    if moved:
        logger.debug("align_weights_: copied %d tensors of %s into owned, %d-byte aligned memory", moved,
                     type(target).__name__, alignment)
    return target


class AlignedLoadingMixin:
    """``from_pretrained`` followed by :func:`align_weights_`.

    Put it first in the bases of a diffusers model (``class Model(AlignedLoadingMixin, ModelMixin,
    ConfigMixin)``): every load — direct, or as a component of a pipeline folder — then returns parameters
    and buffers in owned, 64-byte aligned memory, and the loaded model's forward pass is bit-identical to
    the saved one's on the same machine.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """As the next class's ``from_pretrained`` (e.g. :meth:`diffusers.ModelMixin.from_pretrained`), then
        :func:`align_weights_`."""
        return align_weights_(super().from_pretrained(*args, **kwargs))  # type: ignore[misc]
