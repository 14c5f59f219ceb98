"""The metrics log and the progress bar of ``ispbench.training.run``."""

from __future__ import annotations

from ispbench.training.run import MetricsLog, finish_run, progress_bar, read_metrics, start_run


def test_metrics_log_keeps_resumed_rows_and_fills_missing_cells(tmp_path):
    log = MetricsLog(tmp_path, fieldnames=["step", "loss", "eval"])
    log.append({"step": 1, "loss": 0.5})
    log.append({"step": 2, "loss": 0.25, "eval": 3.0})
    assert read_metrics(tmp_path) == [{"step": "1", "loss": "0.5", "eval": ""}, {"step": "2", "loss": "0.25", "eval": "3.0"}]
    (tmp_path / "metrics.csv").write_text("step,loss,eval\n1,0.5,\n2,0.25,3.0\n99,9,9\n")  # a row after the checkpoint
    resumed = MetricsLog(tmp_path, rows=log.rows[:1], fieldnames=["step", "loss", "eval"])
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1"]  # rewritten from the checkpoint's rows at once
    resumed.append({"step": 2, "loss": 0.3})
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1", "2"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_progress_bar_never_passes_total():
    bar = progress_bar(10, initial=4, desc="t")
    bar.update(5)
    bar.update(7)
    assert bar.n == 10
    bar.close()
    silent = progress_bar(10, enabled=False)
    silent.update(100)
    silent.close()


def test_run_folder_and_result_hint_are_printed(tmp_path, capsys):
    run = start_run(tmp_path / "r")
    text = finish_run("ispbench.methods.adaptiveisp.inference:load_policy", run / "policy.pt")
    err = capsys.readouterr().err
    assert run.is_dir() and "run folder:" in err and text in err and "load_policy('" in text
