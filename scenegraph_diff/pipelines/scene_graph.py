"""``SceneGraphPipeline``: Stable Diffusion conditioned on scene graphs (RRNet-style relation rectification)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, T2IAdapter, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from torch import Tensor
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from ..conditioning.conditioner import GraphConditioner
from ..conditioning.grounding import is_grounded
from ..diffusion.scene_graph_refiner import SceneGraphRefiner
from ..graph.scene_graph import SceneGraph
from ..nn.encoders import SceneGraphEncoder
from .callbacks import GroundingCutoffCallback, chain_callbacks
from .graph_pipeline import GraphPipelineMixin, describe_graph

logger = logging.getLogger(__name__)

__all__ = ["SceneGraphPipeline", "describe_graph"]


class SceneGraphPipeline(GraphPipelineMixin, StableDiffusionPipeline):
    r"""Text/graph-to-image generation with Stable Diffusion, conditioned on scene graphs.

    The prompt is encoded as in :class:`~diffusers.StableDiffusionPipeline`; the scene graph (given, or
    parsed from the prompt with :func:`scenegraph_diff.parse`) is encoded by ``graph_encoder`` from node
    features taken from the pipeline's own text encoder (mean of its *input* token embeddings over a
    label's word pieces) and written onto ``prompt_embeds`` by ``graph_conditioner`` (gated offsets at
    the EOT token and at the tokens of each object / relation). Everything else — negative prompts,
    guidance, generators, output types, callbacks, LoRA scale, ``clip_skip`` — is the parent's.

    An untrained ``graph_conditioner`` (zero gates) makes this pipeline's output bit-identical to
    ``StableDiffusionPipeline`` with the same components, prompt and generator.

    Args:
        vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor, image_encoder,
        requires_safety_checker: as in :class:`~diffusers.StableDiffusionPipeline`.
        graph_encoder: a :class:`~scenegraph_diff.nn.SceneGraphEncoder` with ``in_channels`` = the text
            encoder's hidden size. Default: a fresh one (seeded, global RNG untouched), in the UNet's dtype.
        graph_conditioner: a :class:`~scenegraph_diff.conditioning.GraphConditioner` mapping the encoder's
            ``out_channels`` to the UNet's ``cross_attention_dim``. Default: a fresh, zero-gated one.
        graph_refiner: optional :class:`~scenegraph_diff.diffusion.SceneGraphRefiner` (typed scene-graph
            diffusion) used by ``refine_graph_strength > 0`` to clean up the (parsed or given) graphs with
            SDEdit before they are encoded. Not a diffusers component: it runs on the CPU, is not moved by
            ``.to()`` and not written by :meth:`save_pretrained` (save it with its own ``save_pretrained``
            and pass ``graph_refiner=SceneGraphRefiner.from_pretrained(path)`` when loading).
        layout_model: optional layout model (:func:`scenegraph_diff.layout.load_layout_model`) that gives every
            object a box (``sample(graphs, num_samples, generator)``) for box grounding; not saved, like
            ``graph_refiner``.

    **Box grounding (GLIGEN).** When the UNet has GLIGEN's gated self-attention (a GLIGEN checkpoint such as
    ``masterful/gligen-1-4-generation-text-box``, or a folder with a ``grounding/`` sub-folder, e.g. the bundled
    sd-shapes), each object of the graph with a ``box`` becomes a grounding token (phrase ``"red circle"`` + box);
    objects without one get it from ``layout_model``. So ``pipe("a red circle left of a blue square")`` on a grounded
    pipeline with a layout model goes prompt -> parse -> graph -> layout -> GLIGEN -> image in one call, and combines
    with the graph adapter (``graph_scale``). ``grounding=False`` leaves the fusers out: the image is then the
    base UNet's.

    The diffusers habits come from :class:`~.graph_pipeline.GraphPipelineMixin`:
    ``SceneGraphPipeline.from_pretrained(sd_id_or_folder, dtype=torch.float16)`` (any SD 1.x/2.x checkpoint, or a
    folder written by :meth:`save_pretrained`, whose ``graph_encoder/`` and ``graph_conditioner/`` it restores),
    ``from_pipe`` from and to :class:`~diffusers.StableDiffusionPipeline`, ``load_lora_weights`` / ``fuse_lora``,
    ``enable_model_cpu_offload`` (``model_cpu_offload_seq`` =
    ``"text_encoder->graph_encoder->graph_conditioner->image_encoder->unet->vae"``) and step callbacks that may
    replace the graph-conditioned ``prompt_embeds`` (:meth:`text_only_prompt_embeds`,
    :class:`~.callbacks.GraphCutoffCallback`).
    """

    _optional_components = ["safety_checker", "feature_extractor", "image_encoder", "graph_encoder",
                            "graph_conditioner"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        safety_checker: StableDiffusionSafetyChecker | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        requires_safety_checker: bool = False,
        graph_encoder: SceneGraphEncoder | None = None,
        graph_conditioner: GraphConditioner | None = None,
        graph_refiner: SceneGraphRefiner | None = None,
        layout_model: Any = None,
        layout_adapter: T2IAdapter | None = None,
    ) -> None:
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        self.register_graph_modules(graph_encoder, graph_conditioner, graph_refiner, layout_model, layout_adapter)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        scene_graph: SceneGraph | Sequence[SceneGraph] | None = None,
        *args: Any,
        graph_scale: float = 0.6,
        graph_steps_fraction: float = 1.0,
        refine_graph_strength: float = 0.0,
        refine_graph_steps: int = 5,
        graph_generator: torch.Generator | None = None,
        grounding: bool | None = None,
        grounding_steps_fraction: float = 1.0,
        grounding_scale: float = 1.0,
        layout_generator: torch.Generator | None = None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int | None = 1,
        guidance_scale: float = 7.5,
        prompt_embeds: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        r"""Generate images.

        Args:
            prompt: prompt(s); parsed into scene graphs when ``scene_graph`` is not given.
            scene_graph: one :class:`SceneGraph` per prompt. Spans in the graph (when its ``text`` is the
                prompt) or word matches locate each object / relation among the prompt's tokens. Without a
                prompt, ``graph.text`` (or a plain description of the graph) is the prompt.
            graph_scale: RRNet's :math:`w`, the strength of the graph offsets (0 = plain SD; RRNet's
                inference default 0.6, training uses 1).
            graph_steps_fraction: apply the graph conditioning only during the first ``ceil(fraction * N)`` of
                the ``N`` denoising steps, text-only conditioning after (a :class:`~.callbacks.GraphCutoffCallback`
                run after ``callback_on_step_end``, which still gets the tensors it asks for); 0 = none at all.
            refine_graph_strength: SDEdit strength in ``[0, 1]`` for ``graph_refiner`` (see :meth:`refine_graphs`):
                the fraction of object classes and relation slots re-sampled before encoding. 0 (default) = the
                graphs are used as given/parsed; > 0 needs a ``graph_refiner``. Without a prompt, the prompt is
                derived from the refined graph (its ``text``, kept from the input, or its description).
            refine_graph_steps: network evaluations of the refinement (default 5).
            graph_generator: CPU :class:`torch.Generator` of the refinement, separate from ``generator`` so that
                refining never shifts the image noise (global RNG if None).
            grounding: box grounding through the UNet's GLIGEN layers and/or the pipeline's ``layout_adapter``.
                ``None`` (default): on when the pipeline is grounded (:attr:`is_grounded`) and a box is known or can
                be predicted (some object has one, or there is a ``layout_model``). ``True`` without grounding
                layers, or without any box or layout model, is an error.
            grounding_steps_fraction: GLIGEN's scheduled sampling :math:`\beta`: ground only the first
                ``ceil(fraction * N)`` steps (a :class:`~.callbacks.GroundingCutoffCallback`), in ``(0, 1]``.
            grounding_scale: strength of the layout adapter's residuals (T2I-Adapter's ``adapter_conditioning_scale``;
                1 = as trained, 0 = none); GLIGEN layers are not scaled.
            layout_generator: CPU :class:`torch.Generator` of the layout sampling (separate from ``generator``).
            prompt_embeds: precomputed embeddings ``[G, L, D]``; the graph conditioning is added to them.
            negative_prompt, num_images_per_prompt, guidance_scale, negative_prompt_embeds,
            cross_attention_kwargs, clip_skip, **kwargs: as in :meth:`diffusers.StableDiffusionPipeline.__call__`
                (``height``, ``width``, ``num_inference_steps``, ``generator``, ``latents``, ``output_type``, ...).
            callback_on_step_end, callback_on_step_end_tensor_inputs: as in diffusers; the ``prompt_embeds`` a
                callback sees are the graph-conditioned ones (``[negative, positive]`` under guidance), and what it
                returns replaces them from the next step on. :meth:`text_only_prompt_embeds` gives their text-only
                counterpart, e.g. to switch graph conditioning off part-way (see its example).
        """
        if args:
            raise TypeError("SceneGraphPipeline: pass the arguments after `scene_graph` by keyword")
        if not 0.0 <= graph_steps_fraction <= 1.0:
            raise ValueError(f"graph_steps_fraction must be in [0, 1], got {graph_steps_fraction}")
        if not 0.0 < grounding_steps_fraction <= 1.0:
            raise ValueError(f"grounding_steps_fraction must be in (0, 1], got {grounding_steps_fraction}")
        if not grounding_scale >= 0.0:
            raise ValueError(f"grounding_scale must be >= 0, got {grounding_scale}")
        if grounding and not self.is_grounded:
            raise ValueError("grounding=True needs a UNet with GLIGEN layers (attention_type 'gated': a GLIGEN "
                             "checkpoint, or a folder with a grounding/ sub-folder) or a layout_adapter (a folder "
                             "with a layout_adapter/ sub-folder)")
        refine = {"strength": refine_graph_strength, "num_steps": refine_graph_steps, "generator": graph_generator}
        # 1. Graphs (refined when asked) and prompts.
        if prompt_embeds is not None and scene_graph is None:
            raise ValueError("SceneGraphPipeline: with prompt_embeds, pass scene_graph (no prompt to parse)")
        prompts, graphs = self.prompts_and_graphs(prompt, scene_graph, refine)
        if grounding is None:
            grounding = self.is_grounded and (self.layout_model is not None
                                              or any(o.box is not None for g in graphs for o in g.objects))
        if grounding:
            graphs = self.layout_graphs(graphs, layout_generator)
            if not any(o.box is not None for g in graphs for o in g.objects):
                raise ValueError("grounding=True but no object has a box and the pipeline has no layout_model")
        device = self._execution_device
        self._guidance_scale = guidance_scale  # what the parent's `do_classifier_free_guidance` reads
        do_cfg = self.do_classifier_free_guidance
        lora_scale = cross_attention_kwargs.get("scale", None) if cross_attention_kwargs is not None else None

        # 2. Encode the prompt exactly as the parent would (one row per prompt; the parent repeats later).
        text_in = None if prompt_embeds is not None else (prompt if prompt is not None else prompts)
        if isinstance(text_in, list) and isinstance(negative_prompt, str):
            negative_prompt = [negative_prompt] * len(text_in)
        base, negative = self.encode_prompt(
            text_in, device, 1, do_cfg, negative_prompt,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
            lora_scale=lora_scale, clip_skip=clip_skip,
        )
        if base.size(0) != len(graphs):
            raise ValueError(f"SceneGraphPipeline: {base.size(0)} prompt embeddings but {len(graphs)} scene graphs")

        # 3. Graph conditioning (none at all for a zero step fraction).
        cond = base if graph_steps_fraction == 0.0 else self.condition_prompt_embeds(base, prompts, graphs,
                                                                                     scale=graph_scale)
        if negative is not None and cond.size(1) > negative.size(1):  # appended graph tokens: pad the negative
            negative = torch.cat([negative, negative.new_zeros(negative.size(0), cond.size(1) - negative.size(1),
                                                               negative.size(2))], dim=1)

        # 4. Step window: back to the text-only embeddings after the first fraction of the steps.
        callback, tensor_inputs = callback_on_step_end, callback_on_step_end_tensor_inputs
        if 0.0 < graph_steps_fraction < 1.0:
            callback, tensor_inputs = self._graph_step_callback(graph_steps_fraction, callback, tensor_inputs)
        k = num_images_per_prompt or 1
        text_only = base.repeat_interleave(k, dim=0) if k > 1 else base  # [B, L, D], what callbacks may switch to

        # 5. Box grounding, for the first fraction of the steps: GLIGEN tokens in the UNet's cross_attention_kwargs,
        #    and/or the layout adapter's residuals (fed by a forward pre-hook on the UNet during the call).
        residuals = None
        if grounding:
            if is_grounded(self.unet):
                cross_attention_kwargs = {**(cross_attention_kwargs or {}),
                                          "gligen": self.grounding_kwargs(graphs, k, do_cfg)}
            if self.layout_adapter is not None:
                residuals = [grounding_scale * r for r in
                             self.layout_residuals(graphs, k, kwargs.get("height"), kwargs.get("width"))]
            if grounding_steps_fraction < 1.0:
                callback, tensor_inputs = chain_callbacks(
                    callback, tensor_inputs or ["latents"], GroundingCutoffCallback(grounding_steps_fraction))

        # 6. Denoise with the parent.
        with self._text_embeds_for_call(text_only), self._grounding_for_call(bool(grounding), residuals):
            return super().__call__(
                prompt=None, prompt_embeds=cond, negative_prompt_embeds=negative, negative_prompt=None,
                num_images_per_prompt=num_images_per_prompt, guidance_scale=guidance_scale,
                cross_attention_kwargs=cross_attention_kwargs, clip_skip=clip_skip,
                callback_on_step_end=callback, callback_on_step_end_tensor_inputs=tensor_inputs, **kwargs,
            )
