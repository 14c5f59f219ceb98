"""The ``paper`` profile's code path, end to end, on tiny fixture datasets in the papers' formats.

Nobody can run ``--profile paper`` here (the papers' datasets, a GPU, hours), so this test runs
each notebook that reads data the way a user with the data would: the fixture downloads of
``tests/data/conftest.py`` (LOD raw + VOC XML, OnePlus, COCO, FiveK DNG + Expert C, HDR+), then
``ispbench data prepare NAME --root DIR --out DIR/ispbench-prepared``, then
``ispbench run NB --profile paper -p data_root DIR ...`` through :func:`ispbench.runner.run`. The
profile's settings stay (``retrain=True``, ``n_images=0`` = all, ``proxy_size=0`` ...); only the
sizes are cut: ``device=cpu``, small images, a handful of iterations. The AdaptiveISP notebooks get
a COCO-80 detector made here: a randomly initialised YOLOv8n built from ultralytics' YAML with
``nc=80``, saved in the checkpoint layout ultralytics writes (``{"model": ..., "train_args": ...}``)
that :class:`ispbench.tasks.detector.FrozenDetector` loads with ``weights_only=True``; never a
download. Each notebook must execute and write its result file with ``profile == "paper"`` and
``data`` naming the fixture dataset.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from data.conftest import build_coco, build_fivek, build_hdrplus, build_lod, build_oneplus, build_restoration_tests

from ispbench import runner
from ispbench.data.prepare import main as prepare_main
from ispbench.data.prepared import PREPARED_DIRNAME


def _lod_with_splits(root: Path) -> Path:
    """The LOD fixture plus the authors' split files (ispbench's fallback split puts <= 400 ids all in val)."""
    build_lod(root)
    (root / "train.txt").write_text("2.png\n4.png\n")
    (root / "val.txt").write_text("6.png\n")
    return root


def _oneplus_with_splits(root: Path) -> Path:
    """The OnePlus fixture plus the release's split lists (Table 9 trains on `train`, scores `val_release`)."""
    build_oneplus(root)
    data = root / "data"  # a third image (a copy of the second): ReconfigISP's search halves the train split
    (data / "0003.png").write_bytes((data / "0002.png").read_bytes())
    (data / "0003.json").write_text((data / "0002.json").read_text().replace("0002.png", "0003.png"))
    (root / "train.txt").write_text("0001.png\n0002.png\n")
    (root / "val.txt").write_text("0003.png\n")
    return root


BUILDERS = {"lod": _lod_with_splits, "oneplus": build_oneplus, "oneplus+splits": _oneplus_with_splits, "coco_raw": build_coco, "fivek": build_fivek,
            "hdrplus": build_hdrplus, "restoration": build_restoration_tests}
#: Sets read as they are (no `ispbench data prepare` step).
UNPREPARED = ("restoration",)
IMGSZ = 64
#: Every AdaptiveISP notebook: the paper's settings but tiny (all 3 LOD fixture images, 64 px, 2 iterations).
ADAPTIVEISP = dict(device="cpu", dataset="lod", imgsz=IMGSZ, batch_size=4, iterations=2)
#: Every RLPixTuner notebook: 32 px, two images, a few queries and training steps.
RLPIXTUNER = dict(device="cpu", resolution=32, n_images=2)
NOTEBOOKS = {
    "adaptiveisp/table1": ("lod", ADAPTIVEISP),
    "adaptiveisp/table3": ("lod", ADAPTIVEISP),
    "adaptiveisp/table4": ("lod", {**ADAPTIVEISP, "lambda_cs": "0,0.01"}),
    "adaptiveisp/table5": ("lod", {**ADAPTIVEISP, "T": 2}),
    "adaptiveisp/table8": ("lod", ADAPTIVEISP),
    "adaptiveisp/pipelines": ("lod", {**ADAPTIVEISP, "n_examples": 2}),
    "adaptiveisp/table9": ("oneplus+splits", {**ADAPTIVEISP, "dataset": "oneplus", "reconfig_iterations": 2}),
    "posisp/main": ("lod", {"device": "cpu", "dataset": "lod", "imgsz": IMGSZ, "batch_size": 4, "iterations": 2}),
    "rlpixtuner/table1": ("fivek", {**RLPIXTUNER, "budget": 4, "proxy_iterations": 2, "iterations": 40}),
    "rlpixtuner/table3": ("hdrplus", {**RLPIXTUNER, "budget": 4, "proxy_iterations": 2}),
    "rlpixtuner/table4": ("fivek", {**RLPIXTUNER, "iterations": 40}),
    "rlpixtuner/trajectory": ("fivek", RLPIXTUNER),
    "irpo/main": ("restoration", {"device": "cpu", "size": 32}),
    "irpo/ablations": ("restoration", {"device": "cpu", "size": 32}),
}
#: OnePlus and raw COCO are evaluation sets (one ``all`` split, no ``train``): scored with the shipped
#: embedded policies they run; retraining (the paper profile's ``retrain=True``) has no training split to use.
OTHER_DETECTION = ("oneplus", "coco_raw")
NO_TRAIN_SPLIT = ("design decision: with retrain=True the AdaptiveISP recipes train on the `dataset` being evaluated, "
                  "but OnePlus and raw COCO are prepared as evaluation sets only (no train split); which set the paper "
                  "profile should train on for them (LOD's train split? a raw-COCO train2017 preparation?) is not decided")
#: Notebooks without data whose paper settings take a path no other profile takes (timing at full
#: resolution, the unfold reference implementations); run tiny.
NO_DATA = {
    "posisp/efficiency": {"device": "cpu", "imgsz": 32, "repeats": 1},
    "rlpixtuner/table2": {"device": "cpu", "resolutions": ["720P"], "budget": 2, "measured": 1, "measured_proxy": 1,
                          "max_seconds": 1.0},
    "ops/benchmark": {"device": "cpu", "size": 16, "batches": [1, 2], "repeats": 1},
}
#: Run by ``make test`` (not slow): one notebook of each paper.
FAST = ("adaptiveisp/table1", "rlpixtuner/trajectory", "irpo/main")


def _tiny_coco_detector(path: Path) -> Path:
    """A random-init YOLOv8n with 80 classes, saved as ultralytics saves a trained one."""
    from ispbench.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    from ispbench.data.prepared import COCO80_NAMES

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    model.names = dict(enumerate(COCO80_NAMES))
    model.args = {"imgsz": IMGSZ}
    torch.save({"model": model.half(), "ema": None, "train_args": {"imgsz": IMGSZ, "task": "detect"}}, path)
    return path


@pytest.fixture(scope="module")
def paper_env(tmp_path_factory):
    """Fixture downloads (prepared on first use), the tiny detector, and results/cache in tmp dirs."""
    base = tmp_path_factory.mktemp("paper")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ISPBENCH_RESULTS", str(base / "results"))
    monkeypatch.setenv("ISPBENCH_CACHE", str(base / "cache"))
    prepared: dict[str, Path] = {}

    def data_root(name: str) -> Path:
        if name not in prepared:
            root = BUILDERS[name](base / "downloads" / name)
            if name not in UNPREPARED:
                assert prepare_main([name.split("+")[0], "--root", str(root), "--out", str(root / PREPARED_DIRNAME)]) == 0
            prepared[name] = root
        return prepared[name]

    env = {"base": base, "results": base / "results", "data_root": data_root,
           "detector": _tiny_coco_detector(base / "yolov8n_coco80_random.pt")}
    yield env
    monkeypatch.undo()


def _run_paper(env, notebook: str, dataset: str, overrides: dict) -> tuple[dict, float]:
    root = env["data_root"](dataset)
    dataset = dataset.split("+")[0]  # "oneplus+splits": the OnePlus fixture with its split lists
    params = {**overrides, "data_root": str(root)}
    if not notebook.startswith("irpo/"):  # the IRPO notebook reads every test set under data_root
        params["dataset"] = dataset
    if notebook.startswith(("adaptiveisp/", "posisp/")):
        params["detector_weights"] = str(env["detector"])
    start = time.perf_counter()
    (report,) = runner.run([notebook], profile="paper", overrides=params, results_root=env["results"])
    seconds = time.perf_counter() - start
    assert report.status == "executed", str(report.error)
    result = json.loads((env["results"] / "paper" / report.slot / "result.json").read_text())
    return result, seconds


def _check(result: dict, notebook: str, dataset: str, root: Path) -> None:
    assert result["profile"] == "paper"
    assert result["parameters"]["data_root"] == str(root)
    data = result["data"]
    assert dataset in data and str(root) in data, data
    assert "embedded" not in data.split("detector:")[0], data


def _cases():
    for notebook, (dataset, overrides) in NOTEBOOKS.items():
        marks = () if notebook in FAST else (pytest.mark.slow,)
        yield pytest.param(notebook, dataset, overrides, id=notebook, marks=marks)
    for dataset in OTHER_DETECTION:
        yield pytest.param("adaptiveisp/table1", dataset, {**ADAPTIVEISP, "retrain": False},
                           id=f"adaptiveisp/table1[{dataset}, shipped]", marks=(pytest.mark.slow,))
        yield pytest.param("adaptiveisp/table1", dataset, ADAPTIVEISP, id=f"adaptiveisp/table1[{dataset}, retrain]",
                           marks=(pytest.mark.slow, pytest.mark.xfail(reason=NO_TRAIN_SPLIT, strict=True)))
    # raw COCO items carry no ISO: the pipelines notebook groups by ISO
    yield pytest.param("adaptiveisp/pipelines", "coco_raw", {**ADAPTIVEISP, "retrain": False, "n_examples": 2},
                       id="adaptiveisp/pipelines[coco_raw, shipped]", marks=(pytest.mark.slow,))


@pytest.mark.parametrize(("notebook", "dataset", "overrides"), list(_cases()))
def test_notebook_runs_under_paper_profile_on_fixture_data(paper_env, notebook, dataset, overrides):
    result, seconds = _run_paper(paper_env, notebook, dataset, overrides)
    _check(result, notebook, dataset.split("+")[0], paper_env["data_root"](dataset))
    print(f"{notebook} ({dataset}): {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", list(NO_DATA))
def test_notebook_without_data_runs_under_paper_profile(paper_env, notebook):
    (report,) = runner.run([notebook], profile="paper", overrides=NO_DATA[notebook], results_root=paper_env["results"])
    assert report.status == "executed", str(report.error)
    result = json.loads((paper_env["results"] / "paper" / report.slot / "result.json").read_text())
    assert result["profile"] == "paper"
    expected = {**runner.load_profile("paper")["notebooks"][notebook], **NO_DATA[notebook]}
    recorded = result["parameters"]
    assert {k: recorded[k] for k in expected if k in recorded} == {k: v for k, v in expected.items() if k in recorded}
    if notebook == "ops/benchmark":
        assert recorded["references"] is True  # the paper profile's own setting: the reference implementations timed


def test_training_on_an_empty_split_is_refused_naming_it(tmp_path):
    """LOD prepared without the authors' split files (ispbench's fallback: the last 400 ids are val) has an
    empty train split on a small download; the trainers refuse it by name instead of an IndexError."""
    from ispbench.data.prepared import DatasetMissingError
    from ispbench.training.detection import DetectionSettings, train_dataset

    root = build_lod(tmp_path / "LOD")
    assert prepare_main(["lod", "--root", str(root)]) == 0
    settings = DetectionSettings(data_root=str(root), dataset="lod", imgsz=IMGSZ)
    assert len(train_dataset(settings, split="val")) == 3
    with pytest.raises(DatasetMissingError, match="'train' split of dataset 'lod'.*is empty.*--splits"):
        train_dataset(settings)
