"""Structural input features for the edge denoiser, computed from a current estimate of the graph.

A 4-layer PPGN sees paths of length ≤ 2⁴ only through soft products and cannot reliably tell whether a
graph is *connected* — the failure that leaves generated community graphs without the bridges between
their communities. DiGress (Vignac et al. 2023) feeds such global features (cycle counts, spectral
features, connected components) computed from the noisy graph; here they are computed from the
self-conditioning estimate ``x̂₀`` (the previous sampling step's prediction, thresholded at 0), so the
network knows e.g. that its current graph has two components and can add a bridge.

Features (all permutation-equivariant, eigenvector sign-invariant):

* pairs ``[B, N, N, 3]``: same connected component; heat kernels ``exp(-τ L)`` of the normalised
  Laplacian at ``τ = 1`` and ``τ = 4`` (``U exp(-τΛ) Uᵀ``, so the sign of eigenvectors does not matter);
* nodes ``[B, N, 3]``: component size / n, degree / n, number of components / n (broadcast).

Opt-in cycle counts (:func:`cycle_features`, DiGress's counts from dense matrix products), for sets whose
statistics are triangles (ENZYMES' clustering):

* pairs ``[B, N, N, 2]``: common neighbours ``(A²)_ij / n`` (the triangles through the edge when ``A_ij = 1``) and
  the 3-paths ``i–k–l–j`` through distinct nodes, ``((A³)_ij − (d_i + d_j − 1) A_ij) / n`` (the 4-cycles through
  the edge);
* nodes ``[B, N, 3]``: triangles at ``i`` / n, 4-cycles at ``i`` / n and the local clustering coefficient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["EDGE_CYCLE_DIM", "EDGE_STRUCT_DIM", "NODE_CYCLE_DIM", "NODE_STRUCT_DIM", "cycle_features",
           "structure_features"]

EDGE_STRUCT_DIM = 3
NODE_STRUCT_DIM = 3
EDGE_CYCLE_DIM = 2
NODE_CYCLE_DIM = 3
HEAT_TIMES = (1.0, 4.0)


@torch.no_grad()
def structure_features(x0: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Features of the graph ``x0 > 0``.

    Args:
        x0: ``[B, N, N]`` estimate of the clean adjacency in ``[-1, 1]`` (or ``{0, 1}`` > 0.5 … any scale whose
            edges are the positive entries).
        node_mask: ``[B, N]`` bool, real nodes.

    Returns:
        ``(edge_feats [B, N, N, 3], node_feats [B, N, 3])``, zero on padded nodes/pairs.
    """
    if x0.dim() != 3 or x0.shape[1] != x0.shape[2] or x0.shape[:2] != node_mask.shape:
        raise ValueError(f"x0 must be [B, N, N] matching node_mask [B, N]; got {tuple(x0.shape)} and "
                         f"{tuple(node_mask.shape)}")
    B, N, _ = x0.shape
    m = node_mask.to(torch.float32)
    pair = m[:, :, None] * m[:, None, :]
    eye = torch.eye(N, device=x0.device).expand(B, N, N)
    adj = (x0 > 0).to(torch.float32) * pair * (1 - eye)
    # connected components: reachability by repeated squaring of (A + I)
    reach = ((adj + eye) > 0).to(torch.float32)
    for _ in range(max(1, math.ceil(math.log2(max(N, 2))))):
        reach = (torch.bmm(reach, reach) > 0).to(torch.float32)
    reach = reach * pair
    n = m.sum(1).clamp(min=1.0)  # [B]
    comp_size = reach.sum(-1)  # [B, N]
    n_comp = (m / comp_size.clamp(min=1.0)).sum(1)  # [B]
    deg = adj.sum(-1)
    # normalised Laplacian (isolated and padded nodes: L_ii = 1, no coupling) and its heat kernels
    dinv = torch.where(deg > 0, deg.clamp(min=1e-9).rsqrt(), torch.zeros_like(deg))
    lap = eye - dinv[:, :, None] * adj * dinv[:, None, :]
    evals, evecs = torch.linalg.eigh(lap)
    heats = [torch.einsum("bik,bk,bjk->bij", evecs, torch.exp(-tau * evals), evecs) * pair for tau in HEAT_TIMES]
    edge = torch.stack([reach, *heats], -1)
    node = torch.stack([comp_size / n[:, None], deg / n[:, None], (n_comp / n)[:, None].expand(B, N)], -1) * m[..., None]
    return edge.to(x0.dtype), node.to(x0.dtype)


@torch.no_grad()
def cycle_features(x0: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Cycle counts of the graph ``x0 > 0`` (O(N³): three batched matrix products).

    Args: as :func:`structure_features`.

    Returns:
        ``(edge_feats [B, N, N, 2], node_feats [B, N, 3])``: pairs ``(A²)_ij / n`` and
        ``((A³)_ij − (d_i + d_j − 1) A_ij) / n``; nodes ``T_i / n`` (triangles at ``i``: ``(A³)_ii / 2``),
        ``Q_i / n`` (4-cycles at ``i``: ``((A⁴)_ii − d_i² − (A d)_i + d_i) / 2``) and the local clustering
        ``T_i / (d_i (d_i − 1) / 2)`` (0 for ``d_i < 2``). Zero on padded nodes/pairs and on the diagonal.
    """
    if x0.dim() != 3 or x0.shape[1] != x0.shape[2] or x0.shape[:2] != node_mask.shape:
        raise ValueError(f"x0 must be [B, N, N] matching node_mask [B, N]; got {tuple(x0.shape)} and "
                         f"{tuple(node_mask.shape)}")
    B, N, _ = x0.shape
    m = node_mask.to(torch.float32)
    pair = m[:, :, None] * m[:, None, :]
    eye = torch.eye(N, device=x0.device).expand(B, N, N)
    offdiag = pair * (1 - eye)
    adj = (x0 > 0).to(torch.float32) * offdiag
    n = m.sum(1).clamp(min=1.0)[:, None]  # [B, 1]
    deg = adj.sum(-1)  # [B, N]
    a2 = torch.bmm(adj, adj)
    a3 = torch.bmm(a2, adj)
    tri = torch.diagonal(a3, dim1=1, dim2=2) / 2
    walks4 = (a2 * a2).sum(-1)  # (A⁴)_ii = Σ_k (A²)_ik², A² symmetric
    quad = (walks4 - deg**2 - torch.bmm(adj, deg[..., None]).squeeze(-1) + deg) / 2
    wedges = deg * (deg - 1) / 2
    clus = torch.where(wedges > 0, tri / wedges.clamp(min=1.0), torch.zeros_like(tri))
    paths3 = (a3 - (deg[:, :, None] + deg[:, None, :] - 1) * adj) * offdiag
    nn_ = n[:, :, None]
    edge = torch.stack([a2 * offdiag / nn_, paths3 / nn_], -1)
    node = torch.stack([tri / n, quad / n, clus], -1) * m[..., None]
    return edge.to(x0.dtype), node.to(x0.dtype)
