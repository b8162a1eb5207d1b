"""Step-end callbacks for graph-conditioned pipelines (diffusers' ``callback_on_step_end`` interface).

* :class:`GraphCutoffCallback` — graph conditioning during the first steps only, plain text conditioning after;
* :class:`GroundingCutoffCallback` — GLIGEN box grounding during the first steps only;
* :func:`chain_callbacks` — run a user's callback, then one of ours, as one ``callback_on_step_end``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.configuration_utils import register_to_config

__all__ = ["GraphCutoffCallback", "GroundingCutoffCallback", "chain_callbacks", "StepCallback"]

#: ``callback(pipeline, step_index, timestep, callback_kwargs) -> dict``, as diffusers calls it
StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class GraphCutoffCallback(PipelineCallback):
    r"""Switch graph conditioning off after the first steps of the denoising loop.

    The first :math:`n` steps run on the graph-conditioned ``prompt_embeds``; at the end of step :math:`n - 1`
    they are replaced by the prompt's plain text embeddings
    (:meth:`~scenegraph_diff.pipelines.GraphPipelineMixin.text_only_prompt_embeds`), so steps :math:`n, n+1,
    \dots` see text only. RRNet-style offsets matter most while the layout forms, in the first, noisiest steps.

    Args:
        cutoff_step_ratio: :math:`n = \lceil r \cdot N \rceil` of the :math:`N` steps, :math:`r \in (0, 1]`
            (the rule of the pipelines' ``graph_steps_fraction``).
        cutoff_step_index: :math:`n` itself, ``>= 1``. Pass exactly one of the two.

    A callback acts after a step, so at least one step is always graph-conditioned (to condition none, call
    the pipeline with ``graph_scale=0``).

    Example::

        from scenegraph_diff.pipelines import GraphCutoffCallback

        image = pipe("a cat on a dog", scene_graph=graph,
                     callback_on_step_end=GraphCutoffCallback(cutoff_step_ratio=0.4)).images[0]

    Raises:
        ValueError: both or neither of the arguments, a ratio outside ``(0, 1]`` or an index below 1 (names it).
    """

    tensor_inputs = ["prompt_embeds"]

    @register_to_config
    def __init__(self, cutoff_step_ratio: float | None = None, cutoff_step_index: int | None = None) -> None:
        if (cutoff_step_ratio is None) == (cutoff_step_index is None):
            raise ValueError(f"GraphCutoffCallback: pass one of cutoff_step_ratio, cutoff_step_index; got "
                             f"cutoff_step_ratio={cutoff_step_ratio!r}, cutoff_step_index={cutoff_step_index!r}")
        if cutoff_step_ratio is not None and not (isinstance(cutoff_step_ratio, (int, float))
                                                  and 0.0 < cutoff_step_ratio <= 1.0):
            raise ValueError(f"cutoff_step_ratio must be in (0, 1], got {cutoff_step_ratio!r}")
        if cutoff_step_index is not None and not (isinstance(cutoff_step_index, int) and cutoff_step_index >= 1):
            raise ValueError(f"cutoff_step_index must be an integer >= 1, got {cutoff_step_index!r}")
        super().__init__(cutoff_step_ratio=None if cutoff_step_ratio is None else float(cutoff_step_ratio),
                         cutoff_step_index=cutoff_step_index)

    def conditioned_steps(self, num_timesteps: int) -> int:
        """:math:`n`, the number of graph-conditioned steps out of ``num_timesteps``."""
        if self.config.cutoff_step_index is not None:
            return int(self.config.cutoff_step_index)
        return math.ceil(float(self.config.cutoff_step_ratio) * num_timesteps)

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any,
                    callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """At the end of step ``n - 1``: ``callback_kwargs["prompt_embeds"]`` (``[B, L, D]``, or ``[2B, L, D]``
        as ``[negative, positive]`` under guidance) -> the text-only embeddings."""
        if step_index + 1 == self.conditioned_steps(pipeline.num_timesteps):
            callback_kwargs["prompt_embeds"] = pipeline.text_only_prompt_embeds(callback_kwargs["prompt_embeds"])
        return callback_kwargs


def chain_callbacks(first: StepCallback | PipelineCallback | MultiPipelineCallbacks | None,
                    first_inputs: Sequence[str], then: PipelineCallback) -> tuple[StepCallback, list[str]]:
    """One ``callback_on_step_end`` that runs ``first`` (a user's, or ``None``) and then ``then``.

    ``first`` gets exactly the tensors it asked for (``first_inputs``; a :class:`PipelineCallback` or
    :class:`MultiPipelineCallbacks` asks for its ``tensor_inputs``) and may return any subset of them;
    ``then`` sees its inputs with ``first``'s replacements applied. Returns the callback and the
    ``callback_on_step_end_tensor_inputs`` to pass with it.
    """
    if isinstance(first, (PipelineCallback, MultiPipelineCallbacks)):
        first_inputs = first.tensor_inputs
    first_inputs = list(first_inputs)
    inputs = list(dict.fromkeys([*first_inputs, *then.tensor_inputs]))

    def run(pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(callback_kwargs)
        if first is not None:
            out.update(first(pipeline, step_index, timestep, {k: callback_kwargs[k] for k in first_inputs}) or {})
        return then(pipeline, step_index, timestep, out)

    return run, inputs


class GroundingCutoffCallback(PipelineCallback):
    r"""GLIGEN's scheduled sampling: box grounding during the first steps only.

    At the end of step :math:`n - 1` every gated self-attention layer of the pipeline's (grounded) UNet is switched
    off (:func:`~scenegraph_diff.conditioning.grounding.set_grounding_enabled`), and so are the layout adapter's
    residuals, so the remaining steps are plain text-conditioned SD; the pipeline switches them back on when the call
    ends. GLIGEN calls the grounded fraction
    :math:`\beta` (diffusers' ``gligen_scheduled_sampling_beta``, 0.3 there).

    Args:
        cutoff_step_ratio: :math:`n = \lceil r \cdot N \rceil` of the :math:`N` steps, :math:`r \in (0, 1]`.

    Raises:
        ValueError: a ratio outside ``(0, 1]``.
    """

    tensor_inputs: list[str] = []

    @register_to_config
    def __init__(self, cutoff_step_ratio: float = 0.3) -> None:
        if not (isinstance(cutoff_step_ratio, (int, float)) and 0.0 < cutoff_step_ratio <= 1.0):
            raise ValueError(f"cutoff_step_ratio must be in (0, 1], got {cutoff_step_ratio!r}")
        super().__init__(cutoff_step_ratio=float(cutoff_step_ratio))

    def conditioned_steps(self, num_timesteps: int) -> int:
        """:math:`n`, the number of grounded steps out of ``num_timesteps``."""
        return math.ceil(float(self.config.cutoff_step_ratio) * num_timesteps)

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any,
                    callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """At the end of step ``n - 1``: the UNet's fusers and the pipeline's layout-adapter residuals off."""
        from ..conditioning.grounding import set_grounding_enabled

        if step_index + 1 == self.conditioned_steps(pipeline.num_timesteps):
            set_grounding_enabled(pipeline.unet, False)
            residuals = getattr(pipeline, "_layout_residuals", None)
            if residuals is not None:
                residuals.enabled = False
        return callback_kwargs
