"""``GraphPipelineMixin``: graph modules inside a diffusers pipeline, behaving the way a diffusers user expects.

Every pipeline of ours that conditions a diffusers pipeline on scene graphs (:class:`SceneGraphPipeline`, and
any later grounded / sd-shapes variant) is ``class P(GraphPipelineMixin, <diffusers pipeline>)``; its
``__init__`` calls the parent's and then :meth:`GraphPipelineMixin.register_graph_modules`. The habits of a
diffusers user then work on it without code of its own:

* ``P.from_pretrained(folder, dtype=torch.float16)`` (or the older ``torch_dtype=``) loads the graph modules
  with the others, in that dtype, with every weight in owned, aligned memory
  (:func:`~scenegraph_diff.weights.align_weights_`);
* ``P.from_pipe(sd_pipe)`` / ``StableDiffusionPipeline.from_pipe(p)`` / ``P.from_pipe(p)`` switch pipelines
  without copying a module;
* ``load_lora_weights`` / ``fuse_lora`` / ``set_adapters`` are the parent's (they act on ``unet`` and
  ``text_encoder``; the graph modules read the text encoder's *input* embeddings, which LoRA leaves alone);
* ``enable_model_cpu_offload`` / ``enable_sequential_cpu_offload`` offload the graph modules too: they are
  placed in ``model_cpu_offload_seq`` right after ``text_encoder`` (derived for each subclass);
* ``callback_on_step_end`` sees the graph-conditioned ``prompt_embeds`` and may replace them;
  :meth:`~GraphPipelineMixin.text_only_prompt_embeds` gives their text-only counterpart, and
  :class:`~.callbacks.GraphCutoffCallback` switches graph conditioning off after a fraction of the steps.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from torch import Tensor

from ..conditioning.alignment import align_batch
from ..conditioning.conditioner import GraphConditioner
from ..conditioning.graph_batch import graph_batch
from ..conditioning.grounding import (
    GROUNDING_FOLDER, PhraseEncoder, grounding_inputs, is_grounded, load_grounding, set_grounding_enabled,
)
from ..conditioning.layout_adapter import LAYOUT_ADAPTER_FOLDER, LayoutResiduals, layout_maps, load_layout_adapter
from ..graph.scene_graph import SceneGraph
from ..nn.encoders import SceneGraphEncoder
from ..weights import align_weights_
from .callbacks import GraphCutoffCallback, chain_callbacks

if TYPE_CHECKING:  # pragma: no cover
    from ..diffusion.scene_graph_refiner import SceneGraphRefiner

logger = logging.getLogger(__name__)

__all__ = ["GraphPipelineMixin", "GRAPH_MODULES", "describe_graph"]

#: the pipeline components that the mixin adds (in the order they run)
GRAPH_MODULES: tuple[str, ...] = ("graph_encoder", "graph_conditioner")

# Set while `from_pipe` runs without a dtype: the pipeline-level cast it ends with is skipped (see from_pipe).
_FROM_PIPE_KEEPS_DTYPES: contextvars.ContextVar[bool] = contextvars.ContextVar("_from_pipe_keeps_dtypes",
                                                                                default=False)


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


class GraphPipelineMixin:
    r"""Scene-graph modules (``graph_encoder``, ``graph_conditioner``, an optional ``graph_refiner``) in a
    diffusers pipeline: defaults, loading, ``from_pipe``, offloading and step callbacks (see the module docstring).

    Put it first in the bases, before the diffusers pipeline class. A subclass:

    * calls :meth:`register_graph_modules` at the end of its ``__init__``;
    * annotates its ``__init__`` with real classes (``unet: UNet2DConditionModel``, ``graph_encoder:
      SceneGraphEncoder | None``): diffusers' ``from_pipe`` hands a component over only when its type matches
      the annotation, so an unresolvable annotation (``Any``, a ``TYPE_CHECKING``-only name) drops it;
    * gets ``model_cpu_offload_seq`` with the graph modules after ``text_encoder`` and ``_optional_components``
      with the graph modules, derived from the parent's when the class is created (a subclass that spells out
      its own ``model_cpu_offload_seq`` must name the graph modules in it).
    """

    graph_encoder: SceneGraphEncoder
    graph_conditioner: GraphConditioner
    graph_refiner: "SceneGraphRefiner | None"
    layout_model: Any
    layout_adapter: Any = None
    _layout_residuals: Any = None
    _text_prompt_embeds: Tensor | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        seq = getattr(cls, "model_cpu_offload_seq", None)
        if seq is not None:
            parts = seq.split("->")
            missing = [name for name in GRAPH_MODULES if name not in parts]
            if missing and "model_cpu_offload_seq" in cls.__dict__:
                raise TypeError(f"{cls.__name__}.model_cpu_offload_seq = {seq!r} leaves out {missing}: graph modules "
                                "must be offloaded like the others")
            if missing:
                at = parts.index("text_encoder") + 1 if "text_encoder" in parts else 0
                cls.model_cpu_offload_seq = "->".join(parts[:at] + missing + parts[at:])
        optional = list(getattr(cls, "_optional_components", None) or [])
        cls._optional_components = optional + [name for name in GRAPH_MODULES if name not in optional]

    # ------------------------------------------------------------------ construction
    def register_graph_modules(self, graph_encoder: SceneGraphEncoder | None = None,
                               graph_conditioner: GraphConditioner | None = None,
                               graph_refiner: "SceneGraphRefiner | None" = None, layout_model: Any = None,
                               layout_adapter: Any = None) -> None:
        """Check, place and register the graph modules (call it after the parent's ``__init__``).

        ``None`` gets a fresh module, seeded (the global RNG is untouched), sized from the text encoder
        (``in_channels`` = its token embedding size) and the UNet (``cross_attention_dim``), on the UNet's device
        and in its dtype: a fresh :class:`GraphConditioner` is zero-gated, so the output is the parent
        pipeline's, bit for bit. Modules passed in are moved to the UNet's device and keep their dtype.

        Raises:
            ValueError: a module's sizes do not fit the text encoder, the UNet or each other (names both).
            TypeError: ``graph_refiner`` has no ``refine()`` method, or ``layout_model`` no ``sample()`` method.
        """
        token_dim = self.text_encoder.get_input_embeddings().embedding_dim  # type: ignore[attr-defined]
        unet = self.unet  # type: ignore[attr-defined]
        cross_dim = unet.config.cross_attention_dim
        fresh = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            if graph_encoder is None:
                graph_encoder = SceneGraphEncoder(in_channels=token_dim, hidden_channels=128, out_channels=cross_dim)
                fresh.append(graph_encoder)
            if graph_conditioner is None:
                graph_conditioner = GraphConditioner(graph_dim=graph_encoder.config.out_channels, embed_dim=cross_dim)
                fresh.append(graph_conditioner)
        if graph_encoder.config.in_channels != token_dim:
            raise ValueError(f"graph_encoder.config.in_channels is {graph_encoder.config.in_channels}, but the text "
                             f"encoder's token embeddings have {token_dim} features")
        if graph_conditioner.config.graph_dim != graph_encoder.config.out_channels:
            raise ValueError(f"graph_conditioner.config.graph_dim is {graph_conditioner.config.graph_dim}, but "
                             f"graph_encoder.config.out_channels is {graph_encoder.config.out_channels}")
        if graph_conditioner.config.embed_dim != cross_dim:
            raise ValueError(f"graph_conditioner.config.embed_dim is {graph_conditioner.config.embed_dim}, but the "
                             f"UNet's cross_attention_dim is {cross_dim}")
        for module in fresh:
            # torch's own cast: diffusers' ModelMixin.to warns about float32 modules on every dtype cast, even
            # for models that keep none in float32
            torch.nn.Module.to(module, device=unet.device, dtype=unet.dtype)
        graph_encoder = graph_encoder.to(device=unet.device).eval()
        graph_conditioner = graph_conditioner.to(device=unet.device).eval()
        self.register_modules(  # type: ignore[attr-defined]
            graph_encoder=graph_encoder, graph_conditioner=graph_conditioner)
        if graph_refiner is not None and not callable(getattr(graph_refiner, "refine", None)):
            raise TypeError(f"graph_refiner is a {type(graph_refiner).__name__} without a refine() method; "
                            "expected a SceneGraphRefiner")
        self.graph_refiner = graph_refiner
        if layout_model is not None and not callable(getattr(layout_model, "sample", None)):
            raise TypeError(f"layout_model is a {type(layout_model).__name__} without a sample() method; expected a "
                            "layout model (scenegraph_diff.layout.load_layout_model)")
        self.layout_model = layout_model
        self.set_layout_adapter(layout_adapter)

    def set_layout_adapter(self, layout_adapter: Any) -> None:
        """Use ``layout_adapter`` (a :class:`~diffusers.T2IAdapter` with one level per UNet down block, or ``None``)
        for box grounding.

        Raises:
            ValueError: its levels do not match the UNet's ``block_out_channels``.
        """
        if layout_adapter is not None:
            channels = list(getattr(layout_adapter.config, "channels", []))
            expected = list(self.unet.config.block_out_channels)  # type: ignore[attr-defined]
            if channels != expected:
                raise ValueError(f"layout_adapter has levels {channels}, but the UNet's block_out_channels are "
                                 f"{expected}")
        self.layout_adapter = layout_adapter

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """As :meth:`diffusers.DiffusionPipeline.from_pretrained`, graph modules included.

        A folder written by ``save_pretrained`` restores ``graph_encoder`` and ``graph_conditioner`` from its
        subfolders (safetensors); a plain Stable Diffusion folder or hub id gets fresh, zero-gated ones; modules
        passed by keyword win. ``dtype`` (or diffusers' deprecated ``torch_dtype``: ``torch.float16``,
        ``torch.bfloat16``, or a ``{name: dtype, "default": dtype}`` dict, e.g. to keep ``graph_encoder`` in
        float32) applies to saved graph modules as to the others: they are loaded in it, not cast after (so
        diffusers' "Casting directly with `to()`" warning never comes from them); fresh ones take the UNet's
        dtype. ``graph_refiner`` and ``layout_model`` are not saved components: pass them by keyword.
        ``requires_safety_checker`` defaults to ``False``. A folder with a ``grounding/`` sub-folder (GLIGEN layers
        stored on their own, :func:`~scenegraph_diff.conditioning.grounding.save_grounding`) gets them added to its
        UNet; a GLIGEN checkpoint (UNet with ``attention_type="gated"``) is grounded as it is.

        Every parameter and buffer of every component ends in owned, 64-byte aligned memory, so the loaded
        pipeline computes bit for bit what the saved one did on the same machine.
        """
        if "requires_safety_checker" in inspect.signature(cls.__init__).parameters:
            kwargs.setdefault("requires_safety_checker", False)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)  # type: ignore[misc]
        grounding = Path(str(pretrained_model_name_or_path)) / GROUNDING_FOLDER
        if grounding.is_dir() and not is_grounded(pipe.unet) and "unet" not in kwargs:
            pipe.register_modules(unet=load_grounding(pipe.unet, grounding))
        adapter = Path(str(pretrained_model_name_or_path)) / LAYOUT_ADAPTER_FOLDER
        if adapter.is_dir() and kwargs.get("layout_adapter") is None \
                and "layout_adapter" in inspect.signature(cls.__init__).parameters:
            loaded = load_layout_adapter(adapter, dtype=pipe.unet.dtype).to(pipe.unet.device)
            pipe.set_layout_adapter(align_weights_(loaded))
        return align_weights_(pipe)

    @classmethod
    def from_pipe(cls, pipeline: Any, **kwargs: Any) -> Any:
        """As :meth:`diffusers.DiffusionPipeline.from_pipe`: a new pipeline on the same component objects.

        From a plain Stable Diffusion pipeline the graph modules are fresh and zero-gated (output bit-identical
        to the source's) unless passed by keyword; from one of ours they are shared, as is its ``graph_refiner``.
        (The other way, ``StableDiffusionPipeline.from_pipe(ours)`` drops the graph modules.)

        Unlike diffusers 0.42, which casts the new pipeline (and so the shared components of the source) to
        float32 when no dtype is given (huggingface/diffusers#12754), the components keep their dtypes unless
        ``dtype`` / ``torch_dtype`` is passed.
        """
        for name in ("graph_refiner", "layout_model", "layout_adapter"):
            if name not in kwargs and getattr(pipeline, name, None) is not None \
                    and name in inspect.signature(cls.__init__).parameters:
                kwargs[name] = getattr(pipeline, name)
        if kwargs.get("dtype") is not None or kwargs.get("torch_dtype") is not None:
            return super().from_pipe(pipeline, **kwargs)  # type: ignore[misc]
        token = _FROM_PIPE_KEEPS_DTYPES.set(True)
        try:
            return super().from_pipe(pipeline, **kwargs)  # type: ignore[misc]
        finally:
            _FROM_PIPE_KEEPS_DTYPES.reset(token)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`diffusers.DiffusionPipeline.to` (while :meth:`from_pipe` runs without a dtype, its closing
        ``to(dtype=float32)`` is skipped)."""
        if _FROM_PIPE_KEEPS_DTYPES.get() and not args and set(kwargs) == {"dtype"}:
            return self
        return super().to(*args, **kwargs)  # type: ignore[misc]

    # ------------------------------------------------------------------ graphs
    def token_embedder(self) -> Any:
        """The label embedder of the graph nodes: mean input token embedding of the pipeline's text encoder."""
        from ..text.transformer import TransformerTokenEmbedder

        tokenizer, text_encoder = self.tokenizer, self.text_encoder  # type: ignore[attr-defined]
        return TransformerTokenEmbedder(tokenizer, text_encoder.get_input_embeddings())

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

    def prompts_and_graphs(self, prompt: str | list[str] | None, scene_graph: SceneGraph | Sequence[SceneGraph] | None,
                           refine: dict[str, Any] | None = None) -> tuple[list[str], list[SceneGraph]]:
        """One prompt and one (refined, with ``refine`` = :meth:`refine_graphs` keywords) graph per image row:
        graphs parsed from the prompts when none are given; prompts from ``graph.text`` (or
        :func:`describe_graph`) when none are given.

        Raises:
            ValueError: neither is given, or their counts differ. TypeError: a graph is not a :class:`SceneGraph`.
        """
        name = type(self).__name__
        refine = refine or {"strength": 0.0}
        if scene_graph is None:
            if prompt is None:
                raise ValueError(f"{name}: pass a prompt, a scene_graph, or both")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            from ..parsing import parse_batch  # lazily: the parser is only needed without a graph

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
            raise ValueError(f"{name}: {len(prompts)} prompts but {len(graphs)} scene graphs")
        return prompts, graphs

    @torch.no_grad()
    def condition_prompt_embeds(self, prompt_embeds: Tensor, prompts: Sequence[str], graphs: Sequence[SceneGraph],
                                scale: float = 1.0) -> Tensor:
        """Encode ``graphs`` and apply ``graph_conditioner`` to ``prompt_embeds [G, L, D]`` (one row per graph);
        returns ``[G, L, D]`` (``[G, L + T, D]`` with appended graph tokens) in ``prompt_embeds``' dtype."""
        tokenizer = self.tokenizer  # type: ignore[attr-defined]
        alignment = align_batch(graphs, tokenizer, prompts, max_length=prompt_embeds.size(1))
        batch = graph_batch(graphs, self.token_embedder(), prompt_embeds, alignment)  # scene node = EOT state
        out = self.graph_encoder(batch)
        return self.graph_conditioner(prompt_embeds, out, alignment, scale=scale).to(prompt_embeds.dtype)

    # ------------------------------------------------------------------ grounding (GLIGEN)
    @property
    def is_grounded(self) -> bool:
        """Whether boxes can be drawn in: the UNet has GLIGEN's layers (a GLIGEN checkpoint, or a ``grounding/``
        folder) or the pipeline has a ``layout_adapter`` (a ``layout_adapter/`` folder)."""
        return is_grounded(self.unet) or self.layout_adapter is not None  # type: ignore[attr-defined]

    def layout_graphs(self, graphs: Sequence[SceneGraph],
                      generator: torch.Generator | Sequence[torch.Generator] | None = None) -> list[SceneGraph]:
        """``graphs`` with a box on every object: given boxes are kept, the others come from ``layout_model``
        (one sample per graph, :meth:`sample` of a :mod:`scenegraph_diff.layout` model). Without a layout model the
        graphs are returned as they are (only their boxed objects are grounded).

        Args:
            graphs: the scene graphs.
            generator: CPU :class:`torch.Generator` of the layout sampling (global RNG if None), or one per graph
                (each graph's layout then does not depend on the others; one batched sampling all the same).
        """
        if isinstance(generator, (list, tuple)) and len(generator) != len(graphs):
            raise ValueError(f"{len(generator)} layout generators for {len(graphs)} graphs")
        need = [i for i, g in enumerate(graphs) if any(o.box is None for o in g.objects)]
        out = list(graphs)
        if not need or self.layout_model is None:
            return out
        gen = [generator[i] for i in need] if isinstance(generator, (list, tuple)) else generator
        sampled = self.layout_model.sample([graphs[i] for i in need], num_samples=1, generator=gen)
        for i, samples in zip(need, sampled):
            out[i] = samples[0]
        return out

    def grounding_kwargs(self, graphs: Sequence[SceneGraph], num_images_per_prompt: int = 1,
                         do_classifier_free_guidance: bool = True) -> dict[str, Tensor]:
        """The UNet's ``cross_attention_kwargs["gligen"]`` for ``graphs`` (their boxed objects): ``boxes [R, N, 4]``,
        ``positive_embeddings [R, N, D]``, ``masks [R, N]`` with ``R = G * num_images_per_prompt`` rows, doubled as
        ``[negative, positive]`` under guidance (the negative rows masked: no grounding, as GLIGEN samples)."""
        encode = PhraseEncoder(self.text_encoder, self.tokenizer)  # type: ignore[attr-defined]
        g = grounding_inputs(graphs, encode)
        dtype, device = self.unet.dtype, self._execution_device  # type: ignore[attr-defined]
        g = {k: v.repeat_interleave(num_images_per_prompt, dim=0).to(device=device, dtype=dtype) for k, v in g.items()}
        if do_classifier_free_guidance:
            g = {k: torch.cat([v, v]) for k, v in g.items()}
            g["masks"][: g["masks"].size(0) // 2] = 0
        return g

    @torch.no_grad()
    def layout_residuals(self, graphs: Sequence[SceneGraph], num_images_per_prompt: int = 1,
                         height: int | None = None, width: int | None = None) -> list[Tensor]:
        """The ``layout_adapter``'s residuals for ``graphs`` (their boxed objects, painted as phrase-embedding maps
        of ``height x width`` pixels, :func:`~scenegraph_diff.conditioning.layout_adapter.layout_maps`): one
        ``[G * num_images_per_prompt, C_i, h_i, w_i]`` per UNet down block."""
        if self.layout_adapter is None:
            raise ValueError("layout_residuals: the pipeline has no layout_adapter")
        unet = self.unet  # type: ignore[attr-defined]
        size = int(unet.config.sample_size * self.vae_scale_factor)  # type: ignore[attr-defined]
        g = grounding_inputs(graphs, PhraseEncoder(self.text_encoder, self.tokenizer))  # type: ignore[attr-defined]
        param = next(self.layout_adapter.parameters())
        maps = layout_maps(g["boxes"], g["positive_embeddings"], g["masks"], height or size, width or height or size)
        maps = maps.to(device=param.device, dtype=param.dtype).repeat_interleave(num_images_per_prompt, dim=0)
        return [r.to(unet.device) for r in self.layout_adapter(maps)]

    @contextlib.contextmanager
    def _grounding_for_call(self, on: bool, residuals: Sequence[Tensor] | None = None) -> Iterator[None]:
        """Fusers on (``on``) or off for the call, and the layout adapter's ``residuals`` fed to the UNet; fusers always
        back on and the residuals gone when it ends (a cut-off callback switches both off)."""
        hook = LayoutResiduals(self.unet, residuals) if residuals else None  # type: ignore[attr-defined]
        if is_grounded(self.unet):  # type: ignore[attr-defined]
            set_grounding_enabled(self.unet, on)  # type: ignore[attr-defined]
        try:
            if hook is None:
                yield
            else:
                with hook:
                    self._layout_residuals = hook
                    yield
        finally:
            self._layout_residuals = None
            if is_grounded(self.unet):  # type: ignore[attr-defined]
                set_grounding_enabled(self.unet, True)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ step callbacks
    def text_only_prompt_embeds(self, prompt_embeds: Tensor) -> Tensor:
        """The running call's ``prompt_embeds`` with the graph conditioning taken out, for a ``callback_on_step_end``.

        Args:
            prompt_embeds: ``callback_kwargs["prompt_embeds"]``: ``[B, L', D]``, or ``[2B, L', D]`` as
                ``[negative, positive]`` under classifier-free guidance (``L' = L + T`` with appended graph tokens).

        Returns:
            ``[B, L, D]`` (``[2B, L, D]``: the negative half kept, its padding cut): the prompt's text-encoder
            embeddings, ``num_images_per_prompt`` rows per prompt, in ``prompt_embeds``' dtype and device.

        Example — graph conditioning for the first half of the steps, with nothing but public API::

            def graph_off_after_half(pipe, step_index, timestep, callback_kwargs):
                if step_index + 1 == pipe.num_timesteps // 2:
                    callback_kwargs["prompt_embeds"] = pipe.text_only_prompt_embeds(callback_kwargs["prompt_embeds"])
                return callback_kwargs

            pipe(prompt, scene_graph=graph, callback_on_step_end=graph_off_after_half,
                 callback_on_step_end_tensor_inputs=["prompt_embeds"])

        Raises:
            RuntimeError: outside a call of the pipeline. ValueError: the batch is neither ``B`` nor ``2B``.
        """
        plain = self._text_prompt_embeds
        if plain is None:
            raise RuntimeError(f"{type(self).__name__}.text_only_prompt_embeds works during a call only (from a "
                               "callback_on_step_end)")
        plain = plain.to(device=prompt_embeds.device, dtype=prompt_embeds.dtype)
        rows = plain.size(0)
        if prompt_embeds.size(0) == 2 * rows:  # [negative, positive]
            return torch.cat([prompt_embeds[:rows, : plain.size(1)], plain])
        if prompt_embeds.size(0) == rows:
            return plain
        raise ValueError(f"prompt_embeds has batch {prompt_embeds.size(0)}, expected {rows} (no guidance) or "
                         f"{2 * rows} ([negative, positive])")

    @contextlib.contextmanager
    def _text_embeds_for_call(self, text_prompt_embeds: Tensor) -> Iterator[None]:
        """Make ``text_prompt_embeds [B, L, D]`` (B = rows of the denoising batch) what
        :meth:`text_only_prompt_embeds` returns until the block ends."""
        self._text_prompt_embeds = text_prompt_embeds
        try:
            yield
        finally:
            self._text_prompt_embeds = None

    @staticmethod
    def _graph_step_callback(graph_steps_fraction: float,
                             callback: Callable | PipelineCallback | MultiPipelineCallbacks | None,
                             tensor_inputs: list[str] | None) -> tuple[Any, list[str]]:
        """The ``callback_on_step_end`` (and its tensor inputs) of a call with ``graph_steps_fraction`` in
        ``(0, 1)``: the user's callback, then a :class:`GraphCutoffCallback`."""
        return chain_callbacks(callback, tensor_inputs or ["latents"],
                               GraphCutoffCallback(cutoff_step_ratio=graph_steps_fraction))
