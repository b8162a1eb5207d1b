"""The learned parser's network (torch): a BiLSTM encoder with tag, attribute-link and relation heads.

Training (:mod:`.train`) uses this module; inference runs the same weights without torch through
:class:`~.learned.NumpyTagger` (tested to match this module's outputs).

Shapes: ``B`` captions, ``T`` tokens, ``H`` = 2 x LSTM hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .align import TAGS
from .learned import TaggerConfig

__all__ = ["SceneGraphTagger"]


def _bucket(d: Tensor, n: int) -> Tensor:
    """Signed distance -> bucket id in ``[0, 2n]`` (``|d| > n`` clipped)."""
    return d.clamp(-n, n) + n


class SceneGraphTagger(nn.Module):
    """BiLSTM encoder + tag, attribute-link and relation heads (see the module docstring).

    Args:
        config: sizes (:class:`TaggerConfig`).
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.word = nn.Embedding(c.num_words, c.word_dim, padding_idx=0)
        self.chars = nn.EmbeddingBag(c.char_buckets, c.char_dim, mode="mean")
        self.drop = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.word_dim + c.char_dim, c.hidden, num_layers=c.layers, bidirectional=True,
                            batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        _heads(self, c, 2 * c.hidden, c.dropout)

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.parameters())
        return f"SceneGraphTagger(words={c.num_words}, predicates={c.num_predicates}, hidden={c.hidden}, params={n})"

    def encode(self, word_ids: Tensor, char_ids: Tensor, char_offsets: Tensor, lengths: Tensor) -> Tensor:
        """Token states.

        Args:
            word_ids: ``[B, T]`` (0 = padding).
            char_ids, char_offsets: flat n-gram ids and per-token offsets for the ``sum(lengths)`` real
                tokens, in row-major order (an ``EmbeddingBag`` input).
            lengths: ``[B]`` tokens per caption (>= 1).

        Returns:
            ``[B, T, H]`` states (zeros at padding).
        """
        B, T = word_ids.shape
        mask = word_ids > 0  # [B, T]
        chars = self.chars(char_ids, char_offsets)  # [N, char_dim]
        x_char = word_ids.new_zeros((B, T, chars.shape[-1]), dtype=chars.dtype)
        x_char[mask] = chars
        x = self.drop(torch.cat([self.word(word_ids), x_char], dim=-1))  # [B, T, E]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # [B, T, H]
        return self.drop(h)

    @staticmethod
    def span_states(h: Tensor, prefix: Tensor, batch: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """``[h_last ; mean(h[start:end])]`` for spans ``(batch, start, end)``; ``prefix`` = cumsum of ``h``
        with a leading zero row ``[B, T+1, H]``. Returns ``[S, 2H]``."""
        mean = (prefix[batch, end] - prefix[batch, start]) / (end - start).clamp(min=1).unsqueeze(-1)
        return torch.cat([h[batch, (end - 1).clamp(min=0)], mean], dim=-1)

    def pair_logits(self, h: Tensor, prefix: Tensor, batch: Tensor, s1: Tensor, e1: Tensor, s2: Tensor,
                    e2: Tensor, m1: Tensor, m2: Tensor) -> Tensor:
        """Relation logits ``[P, num_predicates + 1]`` for ordered mention pairs (``m1``/``m2``: ``[P, D]``
        mention vectors, spans ``(s, e)`` in caption ``batch``)."""
        lo = torch.minimum(e1, e2)
        hi = torch.maximum(torch.maximum(s1, s2), lo)
        between = (prefix[batch, hi] - prefix[batch, lo]) / (hi - lo).clamp(min=1).unsqueeze(-1)
        dist = self.dist(_bucket(s2 - s1, self.config.dist_buckets))
        return self.pair(torch.cat([m1, m2, between, dist], dim=-1))

    def attr_scores(self, q: Tensor, m: Tensor) -> Tensor:
        """Bilinear scores ``[A, M]`` of attribute queries ``[A, D]`` against mentions ``[A, M, D]``."""
        return torch.einsum("ad,amd->am", self.attr_bilinear(q), m)


def _prefix(h: Tensor) -> Tensor:
    return torch.cat([h.new_zeros(h.shape[0], 1, h.shape[2]), h.cumsum(dim=1)], dim=1)  # [B, T+1, H]


def _heads(module: nn.Module, c, H: int, dropout: float) -> None:
    """Add the tag, attribute-link and relation heads on ``H``-d token states to ``module``."""
    module.tagger = nn.Linear(H, len(TAGS))
    module.mention = nn.Sequential(nn.Linear(2 * H, c.mention_dim), nn.ReLU())
    module.attr_query = nn.Sequential(nn.Linear(2 * H, c.mention_dim), nn.ReLU())
    module.attr_bilinear = nn.Linear(c.mention_dim, c.mention_dim, bias=False)
    module.dist = nn.Embedding(2 * c.dist_buckets + 1, 16)
    module.pair = nn.Sequential(
        nn.Linear(2 * c.mention_dim + H + 16, c.pair_hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(c.pair_hidden, c.num_predicates + 1),
    )


class _BertLayer(nn.Module):
    """One post-LayerNorm BERT layer, with BERT's parameter names (so pretrained weights load as they are)."""

    def __init__(self, D: int, heads: int, F: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({"query": nn.Linear(D, D), "key": nn.Linear(D, D), "value": nn.Linear(D, D)}),
            "output": nn.ModuleDict({"dense": nn.Linear(D, D), "LayerNorm": nn.LayerNorm(D, eps=eps)}),
        })
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(D, F)})
        self.output = nn.ModuleDict({"dense": nn.Linear(F, D), "LayerNorm": nn.LayerNorm(D, eps=eps)})
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``x [B, P, D]``, ``keep [B, 1, 1, P]`` (True = a real piece)."""
        B, P, D = x.shape
        a = self.attention["self"]
        q, k, v = (a[n](x).view(B, P, self.heads, D // self.heads).transpose(1, 2) for n in ("query", "key", "value"))
        ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                                         dropout_p=self.dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(B, P, D)
        o = self.attention["output"]
        x = o["LayerNorm"](x + self.drop(o["dense"](ctx)))
        f = self.output["dense"](nn.functional.gelu(self.intermediate["dense"](x), approximate="tanh"))
        return self.output["LayerNorm"](x + self.drop(f))


class EncoderTagger(nn.Module):
    """BERT encoder (MiniLM sizes by default) + the tagger heads of :class:`SceneGraphTagger`, on word states
    = the mean of each word's piece states. Inference twin: :class:`~.accurate.NumpyEncoderTagger`.

    Args:
        config: sizes (:class:`~.accurate.EncoderConfig`).
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = c = config
        D = c.dim
        self.bert = nn.ModuleDict({
            "embeddings": nn.ModuleDict({
                "word_embeddings": nn.Embedding(c.vocab_size, D), "position_embeddings": nn.Embedding(c.max_positions, D),
                "token_type_embeddings": nn.Embedding(c.type_vocab, D), "LayerNorm": nn.LayerNorm(D, eps=c.ln_eps),
            }),
            "encoder": nn.ModuleDict({"layer": nn.ModuleList(
                [_BertLayer(D, c.heads, c.intermediate, c.ln_eps, c.dropout) for _ in range(c.layers)])}),
        })
        self.drop = nn.Dropout(c.dropout)
        _heads(self, c, D, c.dropout)

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.parameters())
        return f"EncoderTagger(layers={c.layers}, predicates={c.num_predicates}, params={n})"

    def load_bert(self, state: dict[str, Tensor]) -> list[str]:
        """Copy pretrained BERT weights (names as in a Hugging Face ``BertModel`` file, with or without a
        ``bert.`` prefix; layers beyond ``config.layers`` ignored). Returns the encoder names not found."""
        own = self.state_dict()
        missing = []
        for k in own:
            if not k.startswith("bert."):
                continue
            src = state.get(k, state.get(k[len("bert."):]))
            if src is None:
                missing.append(k)
                continue
            with torch.no_grad():
                own[k].copy_(torch.as_tensor(src).to(own[k].dtype))
        return missing

    def encode(self, piece_ids: Tensor, piece_lengths: Tensor, word_start: Tensor, word_end: Tensor,
               lengths: Tensor) -> Tensor:
        """Word states ``[B, T, D]`` (zeros at padding): inputs as :func:`~.accurate.piece_inputs` gives them
        (as tensors) plus ``lengths [B]`` words per caption."""
        B, P = piece_ids.shape
        e = self.bert["embeddings"]
        pos = torch.arange(P, device=piece_ids.device)
        x = e["word_embeddings"](piece_ids) + e["position_embeddings"](pos)[None] + e["token_type_embeddings"].weight[0]
        x = self.drop(e["LayerNorm"](x))
        keep = (pos[None, :] < piece_lengths[:, None])[:, None, None, :]
        for layer in self.bert["encoder"]["layer"]:
            x = layer(x, keep)
        prefix = torch.cat([x.new_zeros(B, 1, x.shape[-1]), x.cumsum(dim=1)], dim=1)  # [B, P+1, D]
        T = int(lengths.max())
        b_of = torch.repeat_interleave(torch.arange(B, device=x.device), lengths)
        t_of = torch.arange(len(b_of), device=x.device) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        words = (prefix[b_of, word_end] - prefix[b_of, word_start]) / (word_end - word_start).unsqueeze(-1)
        h = x.new_zeros(B, T, x.shape[-1])
        h = h.index_put((b_of, t_of), words)
        return self.drop(h)

    span_states = staticmethod(SceneGraphTagger.span_states)
    pair_logits = SceneGraphTagger.pair_logits
    attr_scores = SceneGraphTagger.attr_scores
