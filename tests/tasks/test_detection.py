"""FrozenDetector: frozen weights, gradients to images, exact per-image loss, predictions, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ispbench.tasks import detector
from ispbench.tasks.detection_eval import collate_letterboxed, cross_detector_eval, evaluate_isp
from ispbench.tasks.detector import DEFAULT_WEIGHTS, FrozenDetector

SIZE = 64


def _tiny(fuse: bool = True, seed: int = 0, yaml: str = "yolov8n.yaml") -> FrozenDetector:
    torch.manual_seed(seed)
    return FrozenDetector(model_yaml=yaml, nc=3, imgsz=SIZE, fuse=fuse)


@pytest.fixture(scope="module")
def det() -> FrozenDetector:
    return _tiny()


@pytest.fixture(scope="module")
def det_unfused() -> FrozenDetector:
    """Same weights as ``det`` (same seed), BatchNorm layers kept."""
    return _tiny(fuse=False)


@pytest.fixture(scope="module")
def v3tiny() -> FrozenDetector:
    return _tiny(seed=2, yaml="yolov3-tinyu.yaml")


def _targets() -> torch.Tensor:
    # image 0: two objects, image 1: none, image 2: one
    return torch.tensor(
        [[0, 1, 0.5, 0.5, 0.4, 0.3], [0, 2, 0.25, 0.3, 0.2, 0.3], [2, 0, 0.6, 0.6, 0.5, 0.5]], dtype=torch.float32
    )


def test_weights_frozen_and_gradient_reaches_images(det):
    x = torch.rand(3, 3, SIZE, SIZE, requires_grad=True)
    loss = det.per_image_loss(x, _targets())
    assert loss.shape == (3,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.sum().backward()
    assert all(not p.requires_grad and p.grad is None for p in det.model.parameters())
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # every image with a non-zero loss gets a gradient
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()


def test_batchnorm_statistics_untouched_even_after_train(det_unfused):
    d = det_unfused
    d.train()  # a parent module switching to training mode must not unfreeze BN
    assert not d.model.training and not any(m.training for m in d.model.modules())
    bn = [m for m in d.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn, "the unfused model keeps its BatchNorm layers"
    before = [m.running_mean.clone() for m in bn]
    d.per_image_loss(torch.rand(2, 3, SIZE, SIZE), _targets()[:2]).sum()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn, strict=True))


def test_per_image_loss_equals_loss_of_image_alone(det):
    x = torch.rand(3, 3, SIZE, SIZE)
    t = _targets()
    batched, comps = det.per_image_loss(x, t, return_components=True)
    assert comps.shape == (3, 3) and det.loss_names == ("box_loss", "cls_loss", "dfl_loss")
    torch.testing.assert_close(comps.sum(1), batched)
    assert comps[1, 0] == 0 and comps[1, 2] == 0  # no object: class term only
    for b in range(3):
        tb = t[t[:, 0] == b].clone()
        tb[:, 0] = 0
        alone = det.per_image_loss(x[b : b + 1], tb)
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("yaml", ["yolov8n.yaml", "yolov3-tinyu.yaml"])
def test_batched_reduction_equals_per_image_loop(yaml, det, v3tiny):
    d = det if yaml == "yolov8n.yaml" else v3tiny
    x = torch.rand(4, 3, SIZE, SIZE, requires_grad=True)
    t = _targets()
    t = torch.cat([t[2:], t[:2], torch.tensor([[3, 2, 0.4, 0.6, 0.3, 0.2]])])  # rows not sorted by image
    loop, cl = d.per_image_loss(x, t, return_components=True, mode="loop")
    fast, cf = d.per_image_loss(x, t, return_components=True, mode="batched")
    torch.testing.assert_close(cf, cl, rtol=1e-4, atol=1e-5)
    g_loop, = torch.autograd.grad(loop.sum(), x)
    g_fast, = torch.autograd.grad(fast.sum(), x)
    torch.testing.assert_close(g_fast, g_loop, rtol=1e-3, atol=1e-9)
    with pytest.raises(ValueError, match="mode"):
        d.per_image_loss(x, t, mode="fast")


def test_per_image_loss_is_not_the_batch_criterion(det):
    """The batched ultralytics criterion normalises over the batch: sum(per-image) differs from it."""
    x = torch.rand(3, 3, SIZE, SIZE)
    t = _targets()
    ours = det.per_image_loss(x, t).sum()
    _, raw = det.raw_forward(x)
    batch = {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:]}
    theirs = det.criterion(raw, batch)[0].sum()
    assert not torch.isclose(ours, theirs, rtol=1e-3)


def test_fused_equals_unfused(det, det_unfused):
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.model.modules())
    x = torch.rand(2, 3, SIZE, SIZE)
    t = _targets()[:2]
    torch.testing.assert_close(det.per_image_loss(x, t), det_unfused.per_image_loss(x, t), rtol=1e-3, atol=1e-4)


def test_predict_shape_and_ranges(det):
    x = torch.rand(2, 3, SIZE, 2 * SIZE)
    out = det.predict(x, conf=0.001, iou=0.6, max_det=50)
    assert isinstance(out, list) and len(out) == 2
    for d in out:
        assert d.ndim == 2 and d.shape[1] == 6 and len(d) <= 50
        assert (d[:, 0] >= 0).all() and (d[:, 2] <= 2 * SIZE).all() and (d[:, 3] <= SIZE).all()
        assert (d[:, 4] >= 0.001).all() and (d[:, 5] >= 0).all() and (d[:, 5] < 3).all()
        assert torch.all(d[:-1, 4] >= d[1:, 4])  # sorted by score


def test_importing_the_detector_imports_torchvision():
    # in this process other modules import torchvision anyway; a fresh interpreter sees only the detector's imports
    import subprocess
    import sys

    code = "import sys, ispbench.tasks.detector; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True", "ispbench.tasks.detector must import torchvision: else ultralytics' NMS is a Python loop"


def test_predict_uses_torchvision_nms_and_keeps_the_python_loops_boxes(monkeypatch):
    import sys

    import torchvision

    trained = FrozenDetector(weights=DEFAULT_WEIGHTS, imgsz=SIZE)  # an untrained net ties scores: order is arbitrary
    torch.manual_seed(0)
    x = torch.rand(1, 3, SIZE, SIZE).cumsum(-1).div(SIZE).expand(3, 3, SIZE, SIZE) * torch.rand(3, 3, 1, 1)
    calls = []
    kernel = torchvision.ops.nms
    monkeypatch.setattr(torchvision.ops, "nms", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    fast = trained.predict(x, conf=0.001, iou=0.6)
    assert calls, "ultralytics fell back to its Python NMS loop"
    monkeypatch.delitem(sys.modules, "torchvision")  # ultralytics checks sys.modules at each call
    slow = trained.predict(x, conf=0.001, iou=0.6)
    assert len(calls) == 3  # the second call did not use the kernel
    assert sum(len(d) for d in fast) > 0
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)


def test_bad_inputs_refused(det):
    x = torch.rand(1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"targets: expected shape \(N, 6\).*got \(2, 5\)"):
        det.per_image_loss(x, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="class"):
        det.per_image_loss(x, torch.tensor([[0, 7, 0.5, 0.5, 0.1, 0.1]]))
    with pytest.raises(ValueError, match="batch_index"):
        det.per_image_loss(x, torch.tensor([[1, 0, 0.5, 0.5, 0.1, 0.1]]))
    with pytest.raises(ValueError, match="normalised"):
        det.per_image_loss(x, torch.tensor([[0, 0, 50, 50, 10, 10]]))
    with pytest.raises(ValueError, match="multiples of the detector stride 32"):
        det.per_image_loss(torch.rand(1, 3, 60, 64), torch.zeros(0, 6))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        det.predict(torch.rand(3, SIZE, SIZE))


def test_missing_weights_name_the_path_and_command(tmp_path, monkeypatch):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt") as err:
        FrozenDetector(missing)
    assert "ispbench train detector" in str(err.value)
    monkeypatch.setattr(detector, "DEFAULT_WEIGHTS", tmp_path / "embedded_yolo.pt")
    with pytest.raises(FileNotFoundError, match="embedded_yolo.pt") as err:
        FrozenDetector()
    assert "`ispbench train detector`" in str(err.value)


def test_loads_an_ultralytics_checkpoint_file(tmp_path, det_unfused):
    import copy

    src = det_unfused
    model = copy.deepcopy(src.model)
    model.names = {0: "disc", 1: "box", 2: "triangle"}
    path = tmp_path / "det.pt"
    torch.save({"model": model, "train_args": {"box": 7.5, "cls": 0.5, "dfl": 1.5}}, path)
    loaded = FrozenDetector(path, imgsz=SIZE, fuse=False)
    assert loaded.names == {0: "disc", 1: "box", 2: "triangle"} and loaded.weights == path
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(loaded.per_image_loss(x, _targets()[:2]), src.per_image_loss(x, _targets()[:2]))


def _fake_dataset():
    g = torch.Generator().manual_seed(0)
    items = []
    for h, w in [(48, 64), (48, 64), (64, 32)]:
        items.append(
            {
                "image": torch.rand(3, h, w, generator=g) * 0.2,
                "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]]),
                "labels": torch.tensor([1]),
            }
        )
    items.append({"image": torch.rand(3, 48, 64, generator=g), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0)})
    return items


def test_evaluate_isp_runs_and_reports(det):
    calls = []

    def isp(x):
        calls.append(tuple(x.shape))
        return x.clamp(0, 1) ** (1 / 2.2)

    res = evaluate_isp(isp, _fake_dataset(), det, batch_size=8, imgsz=SIZE)
    # consecutive equal-size images batched together; longer side resized to imgsz before the ISP
    assert calls == [(2, 3, 48, 64), (1, 3, 64, 32), (1, 3, 48, 64)]
    for k in ("mAP@0.5", "mAP@0.75", "mAP@0.5:0.95"):
        assert 0.0 <= res[k] <= 100.0  # percent
    assert len(res["per_image_loss"]) == 4 and all(np.isfinite(res["per_image_loss"]))
    assert list(res["per_class"]) == [1] and res["per_class"][1]["name"] == "class1"
    assert len(res["predictions"]) == 4
    with pytest.raises(ValueError, match="isp_fn"):
        evaluate_isp(lambda x: x[:, :1], _fake_dataset(), det, imgsz=SIZE)


def test_cross_detector_eval_scores_the_same_outputs(det, v3tiny):
    other = v3tiny
    data = _fake_dataset()
    outputs = [it["image"] ** (1 / 2.2) for it in data]
    res = cross_detector_eval(outputs, data, {"v8n": det, "v3-tiny": other}, imgsz=SIZE)
    assert set(res) == {"v8n", "v3-tiny"}
    assert res["v8n"]["per_image_loss"] != res["v3-tiny"]["per_image_loss"]
    same = evaluate_isp(lambda x: x ** (1 / 2.2), data, det, imgsz=SIZE)
    # precomputed outputs at native size are resized like evaluate_isp's inputs: close, not bitwise
    np.testing.assert_allclose(res["v8n"]["per_image_loss"], same["per_image_loss"], rtol=0.05)


def _val_items(detector: FrozenDetector):
    """The validation images (sRGB PNG) and labels the embedded detector was trained with.

    Found through the checkpoint's own ``train_args["data"]`` (its ultralytics data.yaml);
    ``(None, None)`` when that folder is not on this machine.
    """
    data = detector.train_args.get("data")
    if not data or not Path(data).is_file():
        return None, None
    import cv2

    folder = Path(data).parent
    items = []
    for f in sorted((folder / "images" / "val").glob("*.png")):
        im = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        text = (folder / "labels" / "val" / (f.stem + ".txt")).read_text()
        rows = np.array([list(map(float, ln.split())) for ln in text.splitlines() if ln.strip()]).reshape(-1, 5)
        items.append(
            {
                "image": torch.from_numpy(im).permute(2, 0, 1).float() / 255,
                "boxes": torch.tensor(rows[:, 1:], dtype=torch.float32),
                "labels": torch.tensor(rows[:, 0]).long(),
            }
        )
    return (items or None), Path(data)


def _embedded_or_skip() -> FrozenDetector:
    if not Path(DEFAULT_WEIGHTS).is_file():
        pytest.skip(f"embedded detector not built ({DEFAULT_WEIGHTS}); run `ispbench train detector`")
    return FrozenDetector()


def test_trained_detector_prefers_clean_images():
    d = _embedded_or_skip()
    items, _ = _val_items(d)
    if items is None:
        pytest.skip("the embedded detector's training data is not on this machine")
    x, t = collate_letterboxed(items[:8], int(d.train_args.get("imgsz", 256)), d.stride)
    g = torch.Generator().manual_seed(0)
    corrupted = (x * 0.05 + 0.25 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        clean, bad = d.per_image_loss(x, t), d.per_image_loss(corrupted, t)
    assert clean.mean() < bad.mean()
    assert (clean < bad).float().mean() >= 0.8


@pytest.mark.slow
def test_evaluate_isp_matches_ultralytics_val(tmp_path):
    """End to end (predict, box mapping, AP) against ultralytics' own validator on the same images."""
    d = _embedded_or_skip()
    items, data_yaml = _val_items(d)
    if items is None:
        pytest.skip("the embedded detector's training data is not on this machine")
    imgsz = int(d.train_args.get("imgsz", 256))
    from ultralytics import YOLO

    for rect in (True, False):
        ours = evaluate_isp(None, items, d, batch_size=16, imgsz=imgsz, rect=rect)
        v = YOLO(str(DEFAULT_WEIGHTS)).val(
            data=str(data_yaml), split="val", imgsz=imgsz, batch=16, conf=0.001, iou=0.6, plots=False,
            device="cpu", workers=0, project=str(tmp_path), name=f"val{rect}", verbose=False, rect=rect,
        )
        assert ours["mAP@0.5"] == pytest.approx(100 * v.box.map50, abs=0.2)  # ours in percent
        assert ours["mAP@0.75"] == pytest.approx(100 * v.box.map75, abs=0.2)
        assert ours["mAP@0.5:0.95"] == pytest.approx(100 * v.box.map, abs=0.2)


def test_one_forward_serves_the_loss_and_the_detections(det):
    # evaluations pass raw_forward's outputs to both: the same numbers as two separate forwards
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))  # _targets: three images
    with torch.no_grad():
        outputs = det.raw_forward(x)
        assert torch.equal(det.per_image_loss(x, _targets(), outputs=outputs), det.per_image_loss(x, _targets()))
    for a, b in zip(det.predict(x, outputs=outputs), det.predict(x), strict=True):
        print(a.shape, b.shape, (a-b).abs().max() if a.shape==b.shape else None); assert torch.equal(a, b)
