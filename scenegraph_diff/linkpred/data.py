"""Loading the offline copies of Planetoid (Cora, CiteSeer) and IMDB for link prediction.

The Planetoid ``ind.*`` files are Python pickles, so they are only read from the pinned copy whose
SHA-256 sums are listed in ``<data_root>/SHA256SUMS``: every raw file is checked before PyG unpickles
it. PyG writes ``processed/`` next to ``raw/``; we load from a temporary copy of the root so nothing is
written into the data folder (or the repository).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData

__all__ = ["default_data_root", "verify_checksums", "load_planetoid", "load_imdb", "normalized_rows",
           "tfidf_svd_features", "augment_features"]

logger = logging.getLogger(__name__)

PLANETOID_NAMES = ("Cora", "CiteSeer")


def default_data_root() -> Path:
    """``../shared/datasets`` relative to the repository (the default for ``--data-root``)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksums(data_root: str | Path, subdir: str) -> list[Path]:
    """Check every file of ``SHA256SUMS`` under ``subdir`` and return their paths.

    Raises:
        FileNotFoundError: when ``SHA256SUMS`` or a listed file is missing.
        ValueError: when a file's hash differs (the file is then never unpickled).
    """
    root = Path(data_root)
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        raise FileNotFoundError(f"{sums} not found: refusing to load unverified pickles from {root}")
    files = []
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        if not name.startswith(subdir.rstrip("/") + "/"):
            continue
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} listed in {sums} is missing")
        if _sha256(path) != digest:
            raise ValueError(f"checksum mismatch for {path}: expected {digest}")
        files.append(path)
    if not files:
        raise FileNotFoundError(f"no file under {subdir!r} is listed in {sums}")
    return files


def load_planetoid(name: str, data_root: str | Path | None = None) -> Data:
    """Load Cora or CiteSeer (raw bag-of-words features, undirected ``edge_index``)."""
    if name not in PLANETOID_NAMES:
        raise ValueError(f"unknown Planetoid dataset {name!r}; expected one of {PLANETOID_NAMES}")
    from torch_geometric.datasets import Planetoid

    root = Path(data_root) if data_root is not None else default_data_root()
    verify_checksums(root, f"planetoid/{name}/raw")
    with tempfile.TemporaryDirectory(prefix="sgd_planetoid_") as tmp:
        shutil.copytree(root / "planetoid" / name / "raw", Path(tmp) / name / "raw")
        data = Planetoid(root=tmp, name=name)[0]
    logger.info("loaded %s: %d nodes, %d directed edges", name, data.num_nodes, data.num_edges)
    return data


def normalized_rows(x: Tensor, tfidf: bool = True) -> Tensor:
    """Dense float32 ``[N, F] -> [N, F]``: the rows of ``x`` (dense or sparse COO), TF-IDF-weighted when
    ``tfidf`` (``idf_f = log(N / (1 + df_f))``, ``df_f`` the number of nodes with a non-zero feature ``f``),
    scaled to unit L2 norm (all-zero rows stay zero)."""
    xd = (x.to_dense() if x.is_sparse else x).detach().float()
    if tfidf:
        df = (xd != 0).sum(0).float()
        xd = xd * torch.log(xd.size(0) / (1.0 + df))
    return xd / xd.norm(dim=1, keepdim=True).clamp(min=1e-12)


def tfidf_svd_features(x: Tensor, k: int, standardize: bool = True, seed: int = 0) -> Tensor:
    """Latent-semantic (LSA) node features: the top-``k`` left singular vectors of the row-normalised
    TF-IDF feature matrix, scaled by their singular values, ``[N, F] -> [N, k]``.

    Unsupervised and edge-free (it sees only the node features, never a link), so it leaks nothing
    from validation or test edges. It adds word co-occurrence across all documents, which a link
    model trained on a few thousand edges cannot learn from them alone. Uses ``torch.svd_lowrank``
    under a forked RNG seeded with ``seed`` (the same features for every run), with ``standardize``
    each column scaled to zero mean and unit variance (the scale of binary bag-of-words inputs).

    Args:
        x: ``[N, F]`` non-negative features (dense or sparse COO).
        k: number of components, ``1 <= k <= min(N, F)``.
        standardize: z-score each column.
        seed: seed of the randomised SVD.
    """
    n, f = x.shape
    if not 1 <= k <= min(n, f):
        raise ValueError(f"k must be in [1, min(N, F)] = [1, {min(n, f)}], got {k}")
    xt = normalized_rows(x, tfidf=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        u, sv, _ = torch.svd_lowrank(xt, q=min(k + 10, n, f), niter=6)
    z = u[:, :k] * sv[:k]
    if standardize:
        z = (z - z.mean(0)) / z.std(0).clamp(min=1e-12)
    return z


def augment_features(x: Tensor, svd_dims: int) -> Tensor:
    """``x`` with :func:`tfidf_svd_features` columns appended: ``[N, F] -> [N, F + svd_dims]`` (sparse
    COO in, sparse COO out; ``svd_dims == 0`` returns ``x`` unchanged)."""
    if svd_dims == 0:
        return x
    z = tfidf_svd_features(x, svd_dims)
    if x.is_sparse:
        return torch.cat([x.coalesce().float(), z.to_sparse()], dim=1).coalesce()
    return torch.cat([x.float(), z], dim=1)


def load_imdb(data_root: str | Path | None = None) -> HeteroData:
    """Load the MAGNN-preprocessed IMDB graph (movie, director, actor; no pickles involved)."""
    from torch_geometric.datasets import IMDB

    root = Path(data_root) if data_root is not None else default_data_root()
    verify_checksums(root, "imdb/raw")
    with tempfile.TemporaryDirectory(prefix="sgd_imdb_") as tmp:
        shutil.copytree(root / "imdb" / "raw", Path(tmp) / "raw")
        data = IMDB(root=tmp)[0]
    return data
