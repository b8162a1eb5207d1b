"""``SceneGraphPipeline``: Stable Diffusion conditioned on scene graphs (RRNet-style relation rectification)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from diffusers import StableDiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from torch import Tensor

from ..conditioning.alignment import align_batch
from ..conditioning.conditioner import GraphConditioner
from ..conditioning.graph_batch import graph_batch
from ..graph.scene_graph import SceneGraph
from ..nn.encoders import SceneGraphEncoder

if TYPE_CHECKING:
    from ..diffusion.scene_graph_refiner import SceneGraphRefiner

logger = logging.getLogger(__name__)

__all__ = ["SceneGraphPipeline", "describe_graph"]


def describe_graph(graph: SceneGraph) -> str:
    """A plain prompt for a graph without text: ``"a black cat on a dog, a ball"``."""
    def noun(i: int) -> str:
        o = graph.objects[i]
        return " ".join(["a", *o.attributes, o.name])

    used: set[int] = set()
    parts = []
    for r in graph.relations:
        parts.append(f"{noun(r.subject)} {r.predicate} {noun(r.object)}")
        used.update((r.subject, r.object))
    parts += [noun(i) for i in range(len(graph.objects)) if i not in used]
    return ", ".join(parts)


class SceneGraphPipeline(StableDiffusionPipeline):
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
            encoder's hidden size. Default: a fresh one (seeded, global RNG untouched).
        graph_conditioner: a :class:`~scenegraph_diff.conditioning.GraphConditioner` mapping the encoder's
            ``out_channels`` to the UNet's ``cross_attention_dim``. Default: a fresh, zero-gated one.
        graph_refiner: optional :class:`~scenegraph_diff.diffusion.SceneGraphRefiner` (typed scene-graph
            diffusion) used by ``refine_graph_strength > 0`` to clean up the (parsed or given) graphs with
            SDEdit before they are encoded. Not a diffusers component: it runs on the CPU, is not moved by
            ``.to()`` and not written by :meth:`save_pretrained` (save it with its own ``save_pretrained``
            and pass ``graph_refiner=SceneGraphRefiner.from_pretrained(path)`` when loading).

    Loading: ``SceneGraphPipeline.from_pretrained(sd_id_or_folder, graph_encoder=..., graph_conditioner=...)``
    works for any SD 1.x/2.x checkpoint; a folder written by :meth:`save_pretrained` restores both graph
    modules from its ``graph_encoder/`` and ``graph_conditioner/`` subfolders (safetensors).
    """

    _optional_components = ["safety_checker", "feature_extractor", "image_encoder", "graph_encoder",
                            "graph_conditioner"]

    def __init__(
        self,
        vae: Any,
        text_encoder: Any,
        tokenizer: Any,
        unet: Any,
        scheduler: Any,
        safety_checker: Any = None,
        feature_extractor: Any = None,
        image_encoder: Any = None,
        requires_safety_checker: bool = False,
        graph_encoder: SceneGraphEncoder | None = None,
        graph_conditioner: GraphConditioner | None = None,
        graph_refiner: SceneGraphRefiner | None = None,
    ) -> None:
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        token_dim = text_encoder.get_input_embeddings().embedding_dim
        cross_dim = unet.config.cross_attention_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if graph_encoder is None:
                graph_encoder = SceneGraphEncoder(in_channels=token_dim, hidden_channels=128,
                                                  out_channels=cross_dim)
            if graph_conditioner is None:
                graph_conditioner = GraphConditioner(graph_dim=graph_encoder.config.out_channels,
                                                     embed_dim=cross_dim)
        if graph_encoder.config.in_channels != token_dim:
            raise ValueError(f"graph_encoder.config.in_channels is {graph_encoder.config.in_channels}, but the text "
                             f"encoder's token embeddings have {token_dim} features")
        if graph_conditioner.config.graph_dim != graph_encoder.config.out_channels:
            raise ValueError(f"graph_conditioner.config.graph_dim is {graph_conditioner.config.graph_dim}, but "
                             f"graph_encoder.config.out_channels is {graph_encoder.config.out_channels}")
        if graph_conditioner.config.embed_dim != cross_dim:
            raise ValueError(f"graph_conditioner.config.embed_dim is {graph_conditioner.config.embed_dim}, but the "
                             f"UNet's cross_attention_dim is {cross_dim}")
        graph_encoder = graph_encoder.to(device=unet.device).eval()
        graph_conditioner = graph_conditioner.to(device=unet.device).eval()
        self.register_modules(graph_encoder=graph_encoder, graph_conditioner=graph_conditioner)
        if graph_refiner is not None and not callable(getattr(graph_refiner, "refine", None)):
            raise TypeError(f"graph_refiner is a {type(graph_refiner).__name__} without a refine() method; "
                            "expected a SceneGraphRefiner")
        self.graph_refiner = graph_refiner

    def refine_graphs(self, graphs: Sequence[SceneGraph], strength: float, num_steps: int = 5,
                      generator: torch.Generator | None = None) -> list[SceneGraph]:
        """SDEdit refinement of ``graphs`` with ``graph_refiner``: re-mask a fraction ``strength`` of the object
        classes and relation slots (dense typed form: classes ``[B, N]``, edge states ``[B, N, N]``) and denoise
        them back in ``num_steps`` network evaluations. ``strength = 0`` returns the graphs unchanged (no network
        call). ``generator``: a CPU :class:`torch.Generator` for the masking and sampling (global RNG if None).
        Refined graphs keep ``text`` and attributes but not token spans, so alignment falls back on word matches.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"refine_graph_strength must be in [0, 1], got {strength}")
        if strength == 0.0:
            return list(graphs)
        if self.graph_refiner is None:
            raise ValueError(f"refine_graph_strength={strength} needs a graph_refiner (a SceneGraphRefiner), but the "
                             "pipeline has none")
        if num_steps < 1:
            raise ValueError(f"refine_graph_steps must be >= 1, got {num_steps}")
        return list(self.graph_refiner.refine(list(graphs), strength=strength, num_steps=num_steps,
                                              generator=generator))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "SceneGraphPipeline":
        """As :meth:`diffusers.DiffusionPipeline.from_pretrained`; also restores ``graph_encoder`` and
        ``graph_conditioner`` from a local folder written by :meth:`save_pretrained` (unless passed)."""
        path = Path(str(pretrained_model_name_or_path))
        dtype = kwargs.get("torch_dtype")
        loaders = (("graph_encoder", SceneGraphEncoder), ("graph_conditioner", GraphConditioner))
        for name, klass in loaders:
            if name not in kwargs and (path / name).is_dir():
                module = klass.from_pretrained(path / name)
                kwargs[name] = module.to(dtype) if isinstance(dtype, torch.dtype) else module
        kwargs.setdefault("requires_safety_checker", False)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def token_embedder(self) -> Any:
        """The label embedder of the graph nodes: mean input token embedding of the pipeline's text encoder."""
        from ..text.transformer import TransformerTokenEmbedder

        return TransformerTokenEmbedder(self.tokenizer, self.text_encoder.get_input_embeddings())

    def _graphs(self, prompt: str | list[str] | None, scene_graph: SceneGraph | Sequence[SceneGraph] | None,
                refine: dict[str, Any] | None = None) -> tuple[list[str], list[SceneGraph]]:
        refine = refine or {"strength": 0.0}
        if scene_graph is None:
            if prompt is None:
                raise ValueError("SceneGraphPipeline: pass a prompt, a scene_graph, or both")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            from ..parsing import (
                parse_batch,  # lazily: the parser is only needed without a graph
            )

            return prompts, self.refine_graphs(list(parse_batch(prompts)), **refine)
        graphs = [scene_graph] if isinstance(scene_graph, SceneGraph) else list(scene_graph)
        for i, g in enumerate(graphs):
            if not isinstance(g, SceneGraph):
                raise TypeError(f"scene_graph[{i}] is a {type(g).__name__}, expected SceneGraph")
        graphs = self.refine_graphs(graphs, **refine)
        if prompt is None:
            prompts = [g.text if g.text is not None else describe_graph(g) for g in graphs]
        else:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(graphs):
            raise ValueError(f"SceneGraphPipeline: {len(prompts)} prompts but {len(graphs)} scene graphs")
        return prompts, graphs

    @torch.no_grad()
    def condition_prompt_embeds(self, prompt_embeds: Tensor, prompts: Sequence[str], graphs: Sequence[SceneGraph],
                                scale: float = 1.0) -> Tensor:
        """Encode ``graphs`` and apply ``graph_conditioner`` to ``prompt_embeds [G, L, D]`` (one row per graph)."""
        alignment = align_batch(graphs, self.tokenizer, prompts, max_length=prompt_embeds.size(1))
        batch = graph_batch(graphs, self.token_embedder(), prompt_embeds, alignment)  # scene node = EOT state
        out = self.graph_encoder(batch)
        return self.graph_conditioner(prompt_embeds, out, alignment, scale=scale).to(prompt_embeds.dtype)

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
            graph_steps_fraction: apply the graph conditioning only during this first fraction of the
                denoising steps (via ``callback_on_step_end``), plain text conditioning after.
            refine_graph_strength: SDEdit strength in ``[0, 1]`` for ``graph_refiner`` (see :meth:`refine_graphs`):
                the fraction of object classes and relation slots re-sampled before encoding. 0 (default) = the
                graphs are used as given/parsed; > 0 needs a ``graph_refiner``. Without a prompt, the prompt is
                derived from the refined graph (its ``text``, kept from the input, or its description).
            refine_graph_steps: network evaluations of the refinement (default 5).
            graph_generator: CPU :class:`torch.Generator` of the refinement, separate from ``generator`` so that
                refining never shifts the image noise (global RNG if None).
            prompt_embeds: precomputed embeddings ``[G, L, D]``; the graph conditioning is added to them.
            negative_prompt, num_images_per_prompt, guidance_scale, negative_prompt_embeds,
            cross_attention_kwargs, clip_skip, callback_on_step_end, callback_on_step_end_tensor_inputs,
            **kwargs: as in :meth:`diffusers.StableDiffusionPipeline.__call__` (``height``, ``width``,
                ``num_inference_steps``, ``generator``, ``latents``, ``output_type``, ...).
        """
        if args:
            raise TypeError("SceneGraphPipeline: pass the arguments after `scene_graph` by keyword")
        if not 0.0 <= graph_steps_fraction <= 1.0:
            raise ValueError(f"graph_steps_fraction must be in [0, 1], got {graph_steps_fraction}")
        refine = {"strength": refine_graph_strength, "num_steps": refine_graph_steps, "generator": graph_generator}
        # 1. Graphs (refined when asked) and prompts.
        if prompt_embeds is not None and scene_graph is None:
            raise ValueError("SceneGraphPipeline: with prompt_embeds, pass scene_graph (no prompt to parse)")
        prompts, graphs = self._graphs(prompt, scene_graph, refine)
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

        # 3. Graph conditioning.
        cond = self.condition_prompt_embeds(base, prompts, graphs, scale=graph_scale)
        if negative is not None and cond.size(1) > negative.size(1):  # appended graph tokens: pad the negative
            negative = torch.cat([negative, negative.new_zeros(negative.size(0), cond.size(1) - negative.size(1),
                                                               negative.size(2))], dim=1)

        # 4. Step window: switch back to the plain text embeddings after the first fraction of the steps.
        user_inputs = list(callback_on_step_end_tensor_inputs or ["latents"])
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            user_inputs = list(callback_on_step_end.tensor_inputs)
        callback = callback_on_step_end
        tensor_inputs = user_inputs
        if graph_steps_fraction < 1.0:
            k = num_images_per_prompt or 1
            plain = base.repeat_interleave(k, dim=0) if k > 1 else base  # [B, L, D]
            user_cb = callback_on_step_end
            tensor_inputs = list(dict.fromkeys(user_inputs + ["prompt_embeds"]))

            def callback(pipe: Any, step: int, timestep: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
                out: dict[str, Any] = {}
                if user_cb is not None:
                    out = dict(user_cb(pipe, step, timestep, {k_: cb_kwargs[k_] for k_ in user_inputs}) or {})
                n_cond = math.ceil(graph_steps_fraction * pipe.num_timesteps)
                if step + 1 == n_cond:  # from the next step on: plain text conditioning
                    pe = out.get("prompt_embeds", cb_kwargs["prompt_embeds"])
                    p = plain.to(pe.dtype)
                    if pe.size(0) == 2 * p.size(0):  # [negative, positive]
                        out["prompt_embeds"] = torch.cat([pe[: p.size(0), : p.size(1)], p])
                    else:
                        out["prompt_embeds"] = p
                return out

            if math.ceil(graph_steps_fraction * kwargs.get("num_inference_steps", 50)) == 0:
                cond = base  # a zero fraction: never condition

        # 5. Denoise with the parent.
        return super().__call__(
            prompt=None, prompt_embeds=cond, negative_prompt_embeds=negative, negative_prompt=None,
            num_images_per_prompt=num_images_per_prompt, guidance_scale=guidance_scale,
            cross_attention_kwargs=cross_attention_kwargs, clip_skip=clip_skip,
            callback_on_step_end=callback, callback_on_step_end_tensor_inputs=tensor_inputs, **kwargs,
        )
