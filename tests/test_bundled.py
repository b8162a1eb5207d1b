"""The bundled-model registry (scenegraph_diff.bundled)."""

import pytest

from scenegraph_diff.bundled import ASSETS, bundled_models, resolve_model


def test_names_resolve_to_their_folders():
    for m in bundled_models():
        assert resolve_model(m.name) == m.folder and m.folder.parent == ASSETS


def test_folders_and_hub_ids_pass_through(tmp_path):
    assert resolve_model(str(tmp_path)) == tmp_path
    assert resolve_model("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"


@pytest.mark.parametrize("bad", ["/nonexistent", "./missing", "../missing/model", "~/no/such/dir"])
def test_missing_local_paths_fail_at_once(bad):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model(bad)
