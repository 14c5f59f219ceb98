"""``ispbench train detector``: train the embedded YOLO detector (or, ``--task segment``, segmenter) on the generated dataset.

Trains a small ultralytics YOLO (built from a model YAML, no download) on the *normal-light*
sRGB renders of the embedded detection set (each rendered by the static default ISP), on the
CPU, with a fixed seed, ``workers=0`` and deterministic kernels; then evaluates mAP@0.5 and
mAP@0.5:0.95 (box, and mask for a segmenter) on

(a) the normal-light val split (default ISP), and
(b) the low-light val split after the same default ISP (the "camera RGB" baseline that a
    learned ISP should beat).

The stripped checkpoint (no optimizer state) is written atomically to ``--out`` (default
``ispbench/weights/embedded_yolo.pt``; with ``--task segment`` the embedded YOLO11n-seg,
``ispbench.tasks.segmenter.DEFAULT_SEG_WEIGHTS``) with a model card (``.md``) and metrics
(``.json``) beside it. ultralytics' run folders go to ``cache_dir()/runs``, never into the repository.

``--task segment`` trains an instance-segmentation model (a ``-seg`` YAML such as
``yolo11n-seg.yaml``) on the polygon export ``yolo_seg/`` of the same images
(``ispbench.data.synthetic_detection.ensure_seg_export``; written on first use). It is the
frozen task network of the POS-ISP / AdaptiveISP segmentation experiments
(``ispbench.tasks.segmenter.FrozenSegmenter``).

Example:
    $ ispbench train detector --epochs 30 --imgsz 160 --seed 0
    $ ispbench train detector --task segment --model yolo11n-seg.yaml --epochs 20 --threads 1
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ispbench import atomic
from ispbench.data import synthetic_detection as sd
from ispbench.offline import configure_ultralytics
from ispbench.paths import WEIGHTS_DIR, cache_dir
from ispbench.seeding import seed_everything
from ispbench.tasks.segmenter import DEFAULT_SEG_WEIGHTS
from ispbench.training.config import parse

DEFAULT_OUT = WEIGHTS_DIR / "embedded_yolo.pt"
#: ``--task`` -> (ultralytics task name, default ``--out``, export folder of normal light, of low light).
TASKS: dict[str, tuple[str, Path, str, str]] = {
    "detect": ("detect", DEFAULT_OUT, "yolo", "yolo_low"),
    "segment": ("segment", DEFAULT_SEG_WEIGHTS, "yolo_seg", "yolo_seg_low"),
}


@dataclass
class Args:
    """Arguments of ``ispbench train detector``."""

    epochs: int = 30
    """training epochs"""
    imgsz: int = 160
    """training / evaluation image size"""
    batch: int = 16
    """batch size"""
    seed: int = 0
    """training seed"""
    model: str = "yolov8n.yaml"
    """ultralytics model YAML (nc is set from the data; a ``-seg`` YAML for ``--task segment``); weights names are
    never downloaded"""
    task: str = "detect"
    """``detect`` (boxes, the ``yolo/`` export) or ``segment`` (instance masks, the ``yolo_seg/`` polygon export)"""
    out: str = ""
    """checkpoint path (empty = the task's shipped file: ``ispbench/weights/embedded_yolo.pt``, or
    ``embedded_yolo11n_seg.pt`` for ``segment``); the model card (``.md``) and metrics (``.json``) go beside it"""
    scenes: int = 0
    """dataset scenes in total (0 = the generator's default, 1200)"""
    data_seed: int = 0
    """dataset generator seed"""
    image_size: int = 160
    """dataset image side"""
    data_root: str = ""
    """dataset folder or parent of version-hash folders (empty = the cache)"""
    threads: int = 2
    """torch CPU threads"""
    device: str = "cpu"
    """torch device for training"""
    eval_only: bool = False
    """skip training: re-evaluate the existing ``--out`` checkpoint and rewrite its metrics/model card"""


def machine_description() -> dict[str, Any]:
    """CPU model and core count of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(v, 1) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": cores, "platform": platform.platform(), "python": platform.python_version(), "load_avg_1_5_15_min": load}


def evaluate(weights: str | os.PathLike, data_yaml: str | os.PathLike, imgsz: int, batch: int, project: Path, name: str, device: str = "cpu") -> dict[str, float]:
    """Box mAP@0.5, mAP@0.5:0.95, precision, recall of ``weights`` on the val split of ``data_yaml`` (ultralytics'
    validator, fractions); for a segmentation model also the mask ones (``mask_map50``, ``mask_map50_95``,
    ``mask_precision``, ``mask_recall``; ultralytics compares masks at a quarter of the image side)."""
    configure_ultralytics()
    from ultralytics import YOLO  # noqa: PLC0415 (only after configure_ultralytics)

    model = YOLO(str(weights))
    res = model.val(
        data=str(data_yaml), split="val", imgsz=imgsz, batch=batch, device=device, workers=0,
        plots=False, project=str(project), name=name, exist_ok=True, verbose=False,
    )
    metrics = {
        "map50": float(res.box.map50),
        "map50_95": float(res.box.map),
        "precision": float(res.box.mp),
        "recall": float(res.box.mr),
    }
    if getattr(res, "seg", None) is not None:
        metrics.update({"mask_map50": float(res.seg.map50), "mask_map50_95": float(res.seg.map),
                        "mask_precision": float(res.seg.mp), "mask_recall": float(res.seg.mr)})
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(Args, argv, prog="ispbench train detector", description=__doc__.splitlines()[0])
    if args.epochs < 1 or args.imgsz < 32 or args.batch < 1:
        print("ispbench train detector: need --epochs >= 1, --imgsz >= 32, --batch >= 1", file=sys.stderr)
        return 2
    if args.task not in TASKS:
        print(f"ispbench train detector: --task must be one of {sorted(TASKS)}, got {args.task!r}", file=sys.stderr)
        return 2
    ultralytics_task, default_out, export, export_low = TASKS[args.task]
    if args.model.endswith(".pt") and not Path(args.model).exists():
        print(f"ispbench train detector: --model {args.model!r} is not a local file; give a model YAML (e.g. yolov8n.yaml), "
              "weights names are never downloaded", file=sys.stderr)
        return 2

    configure_ultralytics()
    import ultralytics  # noqa: PLC0415 (only after configure_ultralytics)
    from ultralytics import YOLO  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    cfg = sd.config_for(args.scenes or None, seed=args.data_seed, image_size=args.image_size)
    t0 = time.perf_counter()
    data_dir = sd.ensure_dataset(args.data_root or None, cfg)
    if args.task == "segment":
        sd.ensure_seg_export(data_dir)
    info = json.loads((data_dir / "info.json").read_text())
    print(f"dataset {data_dir} ({info['counts']}) ready in {time.perf_counter() - t0:.1f} s", flush=True)

    project = cache_dir() / "runs"
    kind = "detector" if args.task == "detect" else "segmenter"
    run_name = f"{kind}_{info['version']}_{Path(args.model).stem}_s{args.seed}_e{args.epochs}_i{args.imgsz}"
    out = Path(args.out or default_out)
    previous = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    if args.eval_only:
        if not out.exists():
            print(f"ispbench train detector: --eval-only needs an existing checkpoint at {out}", file=sys.stderr)
            return 2
        train_time = float(previous.get("train_time_s", float("nan")))
    else:
        start = time.perf_counter()
        model = YOLO(args.model)
        if model.task != ultralytics_task:
            print(f"ispbench train detector: --model {args.model} is an ultralytics {model.task!r} model but --task "
                  f"{args.task} needs a {ultralytics_task!r} one (e.g. yolo11n{'-seg' if args.task == 'segment' else ''}.yaml)",
                  file=sys.stderr)
            return 2
        model.train(
            data=str(data_dir / export / "data.yaml"), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
            device=args.device, workers=0, seed=args.seed, deterministic=True, project=str(project), name=run_name,
            exist_ok=True, plots=False, val=False, amp=False, verbose=False, pretrained=False,
        )
        train_time = time.perf_counter() - start
        save_dir = Path(model.trainer.save_dir)
        last = save_dir / "weights" / "last.pt"
        if not last.exists():
            print(f"ispbench train detector: training finished without {last}", file=sys.stderr)
            return 1
        with atomic.atomic_path(out) as tmp:
            shutil.copyfile(last, tmp)  # ultralytics strips optimizer state from last.pt at the end
        print(f"trained in {train_time:.0f} s -> {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)

    metrics = {
        "normal_val": evaluate(out, data_dir / export / "data.yaml", args.imgsz, 32, project, run_name + "_val_normal"),
        "low_val_default_isp": evaluate(out, data_dir / export_low / "data.yaml", args.imgsz, 32, project, run_name + "_val_low"),
    }
    print(json.dumps(metrics, indent=2), flush=True)
    recipe = " ".join(["ispbench train detector", *_recipe_args(argv)])
    if args.eval_only and previous:  # keep the training facts, refresh metrics and dataset version
        record = dict(previous)
        record["metrics"] = metrics
        prev_data = previous.get("dataset", {})
        record["dataset"] = {
            **prev_data, "version": info["version"], "counts": info["counts"],
            "trained_on_version": prev_data.get("trained_on_version", prev_data.get("version")),
        }
        record["evaluated"] = {"recipe": recipe, "date": time.strftime("%Y-%m-%d"), "machine": machine_description()}
        atomic.write_json(out.with_suffix(".json"), record)
        atomic.write_text(out.with_suffix(".md"), model_card(record))
        return 0
    record = {
        "file": out.name,
        "recipe": recipe,
        "task": args.task,
        "model": args.model,
        "nc": len(sd.CLASS_NAMES),
        "class_names": list(sd.CLASS_NAMES),
        "seed": args.seed,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "threads": args.threads,
        "train_time_s": round(train_time, 1),
        "dataset": {"name": "embedded-detection", "version": info["version"], "counts": info["counts"],
                    "image_size": info["image_size"], "generator_seed": args.data_seed},
        "metrics": metrics,
        "machine": machine_description(),
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "weights_bytes": out.stat().st_size,
        "date": time.strftime("%Y-%m-%d"),
    }
    atomic.write_json(out.with_suffix(".json"), record)
    atomic.write_text(out.with_suffix(".md"), model_card(record))
    return 0


def _recipe_args(argv: list[str]) -> list[str]:
    """``argv`` without ``--out PATH`` (where the file goes is not part of the recipe)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            out.append(arg)
    return out


def _evaluation_note(r: dict[str, Any]) -> str:
    """Model-card lines for metrics re-computed with ``--eval-only`` on another dataset version."""
    ev, data = r.get("evaluated"), r.get("dataset", {})
    if not ev:
        return ""
    lines = [f"- metrics re-evaluated on {ev['date']} with `{ev['recipe']}`"]
    trained = data.get("trained_on_version")
    if trained and trained != data.get("version"):
        lines.append(
            f"  on dataset version `{data['version']}`; trained on version `{trained}`, whose normal-light data"
            " (the training set) is identical: only low-light parameters changed"
        )
    return "\n".join(lines) + "\n"


def _machine_lines(r: dict[str, Any]) -> str:
    return (f"- training time: {r['train_time_s'] / 60:.1f} min on {r['machine']['cpu']} ({r['machine']['cores']} cores; load average\n"
            f"  {r['machine'].get('load_avg_1_5_15_min')} over 1/5/15 min when training ended: the CPU was shared with other jobs)\n"
            f"- versions: ultralytics {r['versions']['ultralytics']}, torch {r['versions']['torch']}\n"
            f"- file size: {r['weights_bytes'] / 1e6:.1f} MB; date {r['date']}\n")


def segmenter_card(r: dict[str, Any]) -> str:
    """Markdown model card of a ``--task segment`` training record."""
    m = r["metrics"]
    rows = "\n".join(
        f"| {label} | {m[key]['mask_map50']:.3f} | {m[key]['mask_map50_95']:.3f} | {m[key]['map50']:.3f} | {m[key]['map50_95']:.3f} |"
        for key, label in (("normal_val", "normal light, default ISP"),
                           ("low_val_default_isp", "low light, default ISP (camera-RGB baseline)")))
    return f"""# {r['file']}: the embedded instance segmenter

A small ultralytics YOLO instance-segmentation model ({r['model']}, nc={r['nc']}: {', '.join(r['class_names'])})
trained from scratch on the **normal-light** sRGB renders of the embedded detection dataset (each
rendered by the static default ISP, `ispbench.data.default_isp.default_isp`) with the polygon labels
of its instance masks (`yolo_seg/`, `ispbench.data.synthetic_detection.ensure_seg_export`). It is
the frozen task network of the segmentation experiments (POS-ISP and AdaptiveISP train an ISP in
front of a frozen YOLO11n-seg): `ispbench.tasks.segmenter.FrozenSegmenter()` loads it (restricted
`weights_only` loading); `ispbench.training.segmentation.SegmentationTask` is its training-kit task.

## Recipe

```
{r['recipe']}
```

- seed {r['seed']}, {r['epochs']} epochs, imgsz {r['imgsz']}, batch {r['batch']}, device CPU, workers 0,
  deterministic, {r['threads']} torch threads; ultralytics defaults otherwise (optimizer `auto`,
  mosaic / HSV / flip / scale augmentation, `overlap_mask`, `mask_ratio` 4); validation only after the
  last epoch; the last checkpoint is shipped (ultralytics strips optimizer state and stores fp16 weights).
- dataset: embedded-detection version `{r['dataset']['version']}` (generator seed
  {r['dataset']['generator_seed']}, {r['dataset']['counts']}, {r['dataset']['image_size'][0]}x{r['dataset']['image_size'][1]}),
  see `data_cards/embedded_detection.md` (instance masks, segmentation export).
{_evaluation_note(r)}{_machine_lines(r)}
## Metrics (val split, {r['dataset']['counts']['val']} scenes, imgsz {r['imgsz']}; ultralytics' validator, fractions)

| val set | mask mAP@0.5 | mask mAP@0.5:0.95 | box mAP@0.5 | box mAP@0.5:0.95 |
| --- | --- | --- | --- | --- |
{rows}

Ultralytics' validator compares masks at a quarter of the image side (40 px here);
`ispbench.tasks.segmentation_eval.evaluate_isp_segmentation` compares them at full resolution and
reports percent. The gap between the two rows is the room a learned ISP has.

## Limitations

Synthetic shapes on photo-crop / procedural backgrounds, one simulated sensor: the numbers say
nothing about LIS (the POS-ISP paper's low-light instance-segmentation set) or COCO classes.
Trained on normal light only, on purpose.
"""


def model_card(r: dict[str, Any]) -> str:
    """Markdown model card of a training record."""
    if r.get("task") == "segment":
        return segmenter_card(r)
    m = r["metrics"]
    n, lo = m["normal_val"], m["low_val_default_isp"]
    name = r.get("file", DEFAULT_OUT.name)
    role = ("It is the frozen\ndetector whose mAP rewards the ISP policies in the `embedded` profile (AdaptiveISP uses a frozen\n"
            "YOLO the same way)." if name == DEFAULT_OUT.name else
            "It is a **second detector of another\narchitecture**, never used in training any ISP: AdaptiveISP's Table 3 scores the ISPs' outputs\n"
            "with it (the paper's cross-detector test with YOLOX and DDQ).")
    return f"""# {name}: {'the embedded detector' if name == DEFAULT_OUT.name else 'a second embedded detector'}

A small ultralytics YOLO ({r['model']}, nc={r['nc']}: {', '.join(r['class_names'])}) trained from
scratch on the **normal-light** sRGB renders of the embedded detection dataset (each rendered by
the static default ISP, `ispbench.data.default_isp.default_isp`). {role} Load it offline with `ultralytics.YOLO(path)` after
`ispbench.offline.configure_ultralytics()`.

## Recipe

```
{r['recipe']}
```

- seed {r['seed']}, {r['epochs']} epochs, imgsz {r['imgsz']}, batch {r['batch']}, device CPU, workers 0,
  deterministic, {r['threads']} torch threads; ultralytics defaults otherwise (optimizer `auto`,
  mosaic / HSV / flip / scale augmentation); validation only after the last epoch; the last
  checkpoint is shipped (ultralytics strips optimizer state and stores fp16 weights).
- dataset: embedded-detection version `{r['dataset']['version']}` (generator seed
  {r['dataset']['generator_seed']}, {r['dataset']['counts']}, {r['dataset']['image_size'][0]}x{r['dataset']['image_size'][1]}),
  see `data_cards/embedded_detection.md`.
{_evaluation_note(r)}- training time: {r['train_time_s'] / 60:.1f} min on {r['machine']['cpu']} ({r['machine']['cores']} cores; load average
  {r['machine'].get('load_avg_1_5_15_min')} over 1/5/15 min when training ended: the CPU was shared with other jobs)
- versions: ultralytics {r['versions']['ultralytics']}, torch {r['versions']['torch']}
- file size: {r['weights_bytes'] / 1e6:.1f} MB; date {r['date']}

## Metrics (val split, {r['dataset']['counts']['val']} scenes, imgsz {r['imgsz']})

| val set | mAP@0.5 | mAP@0.5:0.95 | precision | recall |
| --- | --- | --- | --- | --- |
| normal light, default ISP | {n['map50']:.3f} | {n['map50_95']:.3f} | {n['precision']:.3f} | {n['recall']:.3f} |
| low light, default ISP (camera-RGB baseline) | {lo['map50']:.3f} | {lo['map50_95']:.3f} | {lo['precision']:.3f} | {lo['recall']:.3f} |

The gap between the two rows is the room a learned ISP has (AdaptiveISP, LOD: YOLOv3 on
camera RGB 55.6 vs AdaptiveISP 71.4 mAP@0.5).

## Limitations

Synthetic shapes on photo-crop / procedural backgrounds, one simulated sensor: the numbers say
nothing about real LOD images or COCO classes. Trained on normal light only, on purpose.
"""


if __name__ == "__main__":
    sys.exit(main())
