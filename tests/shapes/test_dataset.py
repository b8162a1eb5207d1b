from __future__ import annotations

import torch

from scenegraph_diff.shapes import ShapesDataset, check, collate_shapes


def test_dataset_items_are_deterministic_and_correct() -> None:
    ds = ShapesDataset(50, seed=3)
    assert len(ds) == 50 and repr(ds) == "ShapesDataset(50, seed=3, size=32)"
    img, g = ds[7]
    img2, g2 = ShapesDataset(50, seed=3)[7]
    assert torch.equal(img, img2) and g == g2
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    assert all(check(ds[i][0].numpy(), ds[i][1]).all_correct for i in range(20))


def test_collate_to_heterodata() -> None:
    from scenegraph_diff.text import HashingEmbedder

    ds = ShapesDataset(8, seed=0)
    images, batch = collate_shapes([ds[i] for i in range(8)], embedder=HashingEmbedder(16))
    assert images.shape == (8, 3, 32, 32)
    assert batch.num_graphs == 8
    assert batch["object"].x.shape == (sum(ds.graph(i).num_objects for i in range(8)), 16)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_shapes)
    first_images, first_batch = next(iter(loader))
    assert first_images.shape == (4, 3, 32, 32) and first_batch.num_graphs == 4
