"""Fixtures shared by the shapes tests."""

import pytest


@pytest.fixture(scope="session")
def tiny_sd_shapes_run(tmp_path_factory):
    """A tiny sd-shapes trained once per session: ``(config, run/pipeline path)``. Tests copy it before changing it."""
    from scenegraph_diff.shapes.sd_shapes import train_sd_shapes

    from .test_sd_shapes import tiny_config

    cfg = tiny_config(tmp_path_factory.mktemp("sd"))
    return cfg, train_sd_shapes(cfg)
