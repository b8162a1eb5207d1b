import hashlib

import pytest

from scenegraph_diff.linkpred.data import load_planetoid, verify_checksums


def _root(tmp_path, content=b"abc", listed=b"abc"):
    (tmp_path / "planetoid" / "Cora" / "raw").mkdir(parents=True)
    f = tmp_path / "planetoid" / "Cora" / "raw" / "ind.cora.x"
    f.write_bytes(content)
    digest = hashlib.sha256(listed).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  planetoid/Cora/raw/ind.cora.x\n")
    return f


def test_verify_checksums_accepts_the_pinned_file(tmp_path):
    f = _root(tmp_path)
    assert verify_checksums(tmp_path, "planetoid/Cora/raw") == [f]


def test_a_modified_pickle_is_never_loaded(tmp_path):
    _root(tmp_path, content=b"tampered")
    with pytest.raises(ValueError, match="checksum mismatch for .*ind.cora.x"):
        load_planetoid("Cora", tmp_path)


def test_missing_checksum_list_refuses(tmp_path):
    with pytest.raises(FileNotFoundError, match="refusing to load unverified pickles"):
        verify_checksums(tmp_path, "planetoid/Cora/raw")
    with pytest.raises(ValueError, match="unknown Planetoid dataset 'PubMed'"):
        load_planetoid("PubMed", tmp_path)
