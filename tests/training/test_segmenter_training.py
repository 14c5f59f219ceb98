"""``ispbench train detector --task segment``: argument checks, the segmenter's model card, a tiny training run."""

from __future__ import annotations

import json

import pytest

from ispbench.data import synthetic_detection as sd
from ispbench.tasks.segmenter import DEFAULT_SEG_WEIGHTS, FrozenSegmenter
from ispbench.training import detector

TINY = sd.GeneratorConfig(seed=0, image_size=64, n_train=8, n_val=2, n_test=1)


def test_task_must_be_known_and_match_the_model(tmp_path, capsys):
    assert detector.main(["--task", "pose", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--task must be one of" in capsys.readouterr().err
    data = sd.generate(TINY, root=tmp_path / "data")
    rc = detector.main(["--task", "segment", "--model", "yolov8n.yaml", "--data-root", str(data), "--out", str(tmp_path / "x.pt")])
    assert rc == 2 and "needs a 'segment' one" in capsys.readouterr().err
    assert (data / "yolo_seg" / "data.yaml").exists()
    assert detector.TASKS["segment"][1] == DEFAULT_SEG_WEIGHTS


def test_segmenter_card_shows_mask_and_box_metrics():
    metrics = {"map50": 0.9, "map50_95": 0.7, "precision": 0.9, "recall": 0.8, "mask_map50": 0.85, "mask_map50_95": 0.61,
               "mask_precision": 0.9, "mask_recall": 0.8}
    record = {"file": "embedded_yolo11n_seg.pt", "recipe": "ispbench train detector --task segment --model yolo11n-seg.yaml",
              "task": "segment", "model": "yolo11n-seg.yaml", "nc": 5, "class_names": list(sd.CLASS_NAMES), "seed": 0,
              "epochs": 15, "imgsz": 160, "batch": 16, "threads": 1, "train_time_s": 1500.0,
              "dataset": {"version": "a631f32d4936", "counts": {"train": 800, "val": 200, "test": 200}, "image_size": [160, 160],
                          "generator_seed": 0},
              "metrics": {"normal_val": metrics, "low_val_default_isp": dict(metrics, mask_map50=0.42)},
              "machine": {"cpu": "cpu", "cores": 2, "load_avg_1_5_15_min": [1, 1, 1]},
              "versions": {"ultralytics": "x", "torch": "y"}, "weights_bytes": 6e6, "date": "2026-12-02"}
    card = detector.model_card(record)
    assert card.startswith("# embedded_yolo11n_seg.pt: the embedded instance segmenter")
    assert record["recipe"] in card and "| 0.850 | 0.610 | 0.900 | 0.700 |" in card and "| 0.420 |" in card


@pytest.mark.slow
def test_tiny_segmenter_training_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPBENCH_CACHE", str(tmp_path / "cache"))
    data = sd.generate(TINY, root=tmp_path / "data")
    out = tmp_path / "w" / "seg.pt"
    rc = detector.main(["--task", "segment", "--model", "yolo11n-seg.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4",
                        "--threads", "1", "--data-root", str(data), "--out", str(out)])
    assert rc == 0 and out.exists()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["task"] == "segment" and "--task segment" in record["recipe"]
    for key in ("normal_val", "low_val_default_isp"):
        assert 0.0 <= record["metrics"][key]["mask_map50"] <= 1.0
    assert "mask mAP@0.5" in out.with_suffix(".md").read_text()
    assert FrozenSegmenter(out, imgsz=64).nc == len(sd.CLASS_NAMES)
