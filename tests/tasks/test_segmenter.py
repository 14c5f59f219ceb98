"""The frozen instance segmenter: per-image loss (independent per image, differentiable to the input), predictions, loading."""

from __future__ import annotations

import pytest
import torch

from ispbench.tasks.segmenter import AUTHORS_LOSS_SCALE, DEFAULT_SEG_WEIGHTS, FrozenSegmenter


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=64)


def _batch():
    """Three 64 px images: one object, none, two objects; rows not sorted by image."""
    targets = torch.tensor([[2, 3, 0.30, 0.40, 0.20, 0.40], [0, 1, 0.50, 0.50, 0.30, 0.30], [2, 0, 0.70, 0.70, 0.30, 0.30]])
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 13:38, 13:26] = True
    masks[1, 22:42, 22:42] = True
    masks[2, 35:54, 35:54] = True
    masks[2, 40:48, 40:48] = False  # a hole
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return images, targets, masks


def test_loss_of_each_image_equals_its_loss_alone(one_thread, segmenter):
    images, targets, masks = _batch()
    batched, comps = segmenter.per_image_loss(images, targets, masks, return_components=True)
    assert batched.shape == (3,) and comps.shape == (3, 5)
    torch.testing.assert_close(comps.sum(1), batched)
    assert segmenter.loss_names == ("box_loss", "seg_loss", "cls_loss", "dfl_loss", "sem_loss")
    for b in range(3):
        rows = targets[:, 0] == b
        alone_targets = targets[rows].clone()
        alone_targets[:, 0] = 0
        alone = segmenter.per_image_loss(images[b : b + 1], alone_targets, masks[rows])
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-5, atol=1e-7)
    assert comps[1, 1] == 0 and comps[0, 1] > 0  # no object, no mask term


def test_the_mask_term_compares_predicted_and_target_masks(one_thread):
    """With every mask logit pushed to about +20 (all pixels "on"), a target mask filling its box costs ~0 and an
    empty one ~20 per pixel: the target masks reach the criterion, one per row, in row order."""
    seg = FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=64)
    head = seg.model.model[-1]
    with torch.no_grad():
        for branch in head.cv4:
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(1.0)  # every coefficient 1
        head.proto.cv3.conv.weight.zero_()
        head.proto.cv3.conv.bias.fill_(1.0)  # every prototype SiLU(1) = 0.73: logits 32 x 0.73 = 23
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5]])
    full = torch.zeros(1, 64, 64, dtype=torch.bool)
    full[0, 16:48, 16:48] = True  # fills its box
    seg_full = seg.per_image_loss(images, targets, full, return_components=True)[1][0, 1]
    seg_empty = seg.per_image_loss(images, targets, torch.zeros_like(full), return_components=True)[1][0, 1]
    assert seg_full < 1e-6 < 0.1 < seg_empty


def test_loss_scale_and_gradient_to_the_input(one_thread, segmenter):
    images, targets, masks = _batch()
    x = images.clone().requires_grad_(True)
    loss = segmenter.per_image_loss(x, targets, masks)
    loss[0].backward()
    assert x.grad[0].abs().sum() > 0
    assert x.grad[1:].abs().sum() == 0  # image 0's loss depends on image 0 only
    assert all(p.grad is None for p in segmenter.parameters())  # frozen
    unscaled = FrozenSegmenter(model_yaml="yolo11n-seg.yaml", nc=5, imgsz=64, loss_scale=1.0)
    unscaled.load_state_dict(segmenter.state_dict())
    torch.testing.assert_close(unscaled.per_image_loss(images, targets, masks) * AUTHORS_LOSS_SCALE, loss.detach())
    # masks already at the prototype resolution (16 x 16 at 64 px) are taken as they are
    small = torch.nn.functional.interpolate(masks[None].float(), size=(16, 16), mode="area")[0].ge(0.5)
    torch.testing.assert_close(segmenter.per_image_loss(images, targets, small), loss.detach())


def test_stays_in_eval_mode_and_refuses_bad_input(one_thread, segmenter):
    segmenter.train()
    assert not segmenter.training and not segmenter.model.training
    images, targets, masks = _batch()
    with pytest.raises(ValueError, match="one mask per target row"):
        segmenter.per_image_loss(images, targets, masks[:2])
    with pytest.raises(ValueError, match="images' size"):
        segmenter.per_image_loss(images, targets, masks[:, :32, :32])
    with pytest.raises(ValueError, match="binary"):
        segmenter.per_image_loss(images, targets, masks.float() * 0.5)
    with pytest.raises(ValueError, match="multiples of the segmenter stride"):
        segmenter.per_image_loss(images[..., :60], targets, masks[..., :60])
    with pytest.raises(ValueError, match="class"):
        segmenter.per_image_loss(images, targets + torch.tensor([0, 9, 0, 0, 0, 0]), masks)
    with pytest.raises(ValueError, match="either weights= or model_yaml="):
        FrozenSegmenter("x.pt", model_yaml="yolo11n-seg.yaml")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        FrozenSegmenter("yolo11n-seg.pt")


def test_predict_returns_boxes_scores_classes_and_masks(one_thread, segmenter):
    images, _, _ = _batch()
    out = segmenter.predict(images[:2], conf=0.0, max_det=7)
    assert len(out) == 2
    for p in out:
        n = len(p["scores"])
        assert 0 < n <= 7
        assert p["boxes"].shape == (n, 4) and p["classes"].shape == (n,) and p["masks"].shape == (n, 64, 64)
        assert p["masks"].dtype == torch.bool and p["classes"].dtype == torch.int64
        assert (p["scores"][:-1] >= p["scores"][1:]).all()
        # masks are cropped to their boxes
        for box, mask in zip(p["boxes"], p["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):
                assert xs.min() >= box[0].floor() and xs.max() < box[2].ceil() + 1
    detections, proto = segmenter.detect(images[:1], conf=0.0, max_det=7)
    assert detections[0].shape[1] == 6 + segmenter.nm and proto.shape == (1, segmenter.nm, 16, 16)


def test_a_detection_checkpoint_is_refused(tmp_path):
    from ispbench.tasks.detector import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no shipped detector")
    with pytest.raises(TypeError, match="'detect' model; a 'segment' model is needed"):
        FrozenSegmenter(DEFAULT_WEIGHTS, imgsz=64)


@pytest.mark.skipif(not DEFAULT_SEG_WEIGHTS.exists(), reason="ispbench/weights/embedded_yolo11n_seg.pt not trained yet")
def test_shipped_segmenter_loads_with_weights_only_and_is_small():
    seg = FrozenSegmenter(imgsz=160)  # through ultralytics' restricted (weights_only) loader
    assert seg.weights == DEFAULT_SEG_WEIGHTS and seg.nc == 5
    assert [seg.names[i] for i in range(5)] == ["disc", "box", "triangle", "ring", "cross"]
    assert DEFAULT_SEG_WEIGHTS.stat().st_size < 10e6
    ckpt = torch.load(DEFAULT_SEG_WEIGHTS, map_location="cpu", weights_only=False)
    assert ckpt.get("optimizer") is None  # optimizer state stripped


def test_one_forward_serves_the_loss_and_the_detections(one_thread, segmenter):
    images, targets, masks = _batch()
    with torch.no_grad():
        outputs = segmenter.raw_forward(images)
        assert torch.equal(segmenter.per_image_loss(images, targets, masks, outputs=outputs),
                           segmenter.per_image_loss(images, targets, masks))
    (shared, proto_shared), (alone, proto) = segmenter.detect(images, outputs=outputs), segmenter.detect(images)
    assert torch.equal(proto_shared, proto) and all(torch.equal(a, b) for a, b in zip(shared, alone, strict=True))
