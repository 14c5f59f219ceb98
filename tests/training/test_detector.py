"""Tests of the embedded detector trainer and the shipped detector checkpoint."""

from __future__ import annotations

import json

import pytest

from ispbench.data import synthetic_detection as sd
from ispbench.paths import WEIGHTS_DIR
from ispbench.training import detector

SHIPPED = WEIGHTS_DIR / "embedded_yolo.pt"


def _yolo():
    from ispbench.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics import YOLO

    return YOLO


@pytest.mark.skipif(not SHIPPED.exists(), reason="ispbench/weights/embedded_yolo.pt not trained yet")
def test_shipped_weights_load_offline_with_five_classes():
    model = _yolo()(str(SHIPPED))
    assert len(model.names) == len(sd.CLASS_NAMES)
    assert [model.names[i] for i in range(len(sd.CLASS_NAMES))] == list(sd.CLASS_NAMES)
    assert SHIPPED.stat().st_size < 10e6
    card = SHIPPED.with_suffix(".md").read_text()
    record = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert record["recipe"] in card and "ispbench train detector" in record["recipe"]
    assert {"normal_val", "low_val_default_isp"} <= set(record["metrics"])
    ckpt = __import__("torch").load(SHIPPED, map_location="cpu", weights_only=False)
    assert ckpt.get("optimizer") is None  # optimizer state stripped


def test_refuses_bare_weights_name(capsys):
    assert detector.main(["--model", "yolov8n.pt", "--out", "unused.pt"]) == 2
    assert "never downloaded" in capsys.readouterr().err


def test_recipe_drops_output_path():
    assert detector._recipe_args(["--epochs", "3", "--out", "/x.pt", "--seed", "1", "--out=/y.pt"]) == ["--epochs", "3", "--seed", "1"]


@pytest.mark.slow
def test_tiny_training_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPBENCH_CACHE", str(tmp_path / "cache"))
    cfg = sd.GeneratorConfig(seed=0, image_size=64, n_train=8, n_val=2, n_test=1)
    data = sd.generate(cfg, root=tmp_path / "data")
    out = tmp_path / "w" / "det.pt"
    rc = detector.main(["--epochs", "1", "--imgsz", "64", "--batch", "4", "--data-root", str(data), "--out", str(out)])
    assert rc == 0 and out.exists()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["dataset"]["version"] == cfg.version_hash()
    assert record["recipe"] == f"ispbench train detector --epochs 1 --imgsz 64 --batch 4 --data-root {data}"
    for key in ("normal_val", "low_val_default_isp"):
        assert 0.0 <= record["metrics"][key]["map50"] <= 1.0
    assert "mAP@0.5" in out.with_suffix(".md").read_text()
    assert len(_yolo()(str(out)).names) == len(sd.CLASS_NAMES)
    assert (tmp_path / "cache" / "runs").is_dir()
    # --eval-only keeps the training facts and refreshes metrics.
    assert detector.main(["--eval-only", "--imgsz", "64", "--data-root", str(data), "--out", str(out)]) == 0
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["train_time_s"] == record["train_time_s"] and "evaluated" in again
    assert again["metrics"] == record["metrics"]  # same weights, same data: same numbers
