"""The teaching labs: the stubs fail their checks with a message, the solutions pass, the notebooks run.

The exercise and solution code is read from the source notebooks (cells tagged ``exercise`` and
``solution``), so what is tested is what a student gets and what the book shows folded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from ispbench import runner
from ispbench.labs import checks, grpo, isp_modules, selector, tuning
from ispbench.labs.checks import CheckResult

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks" / "labs"
LABS = ("lab1_isp_modules", "lab2_stage_selector", "lab3_equal_budget_tuning", "lab4_grpo_restoration")


@pytest.fixture(scope="module")
def lab4_data():
    return grpo.restoration_data("train", 2, 32), grpo.restoration_data("test", 1, 32, seed=1)


@pytest.fixture(scope="module")
def lab2_problems():
    return selector.toy_problem(64, size=16, seed=0), selector.toy_problem(32, size=16, seed=1, split="val")


def _grade_lab2(ns: dict[str, Any], problems) -> list[CheckResult]:
    results = selector.check_choose_modules(ns["choose_modules"]) + selector.check_policy_gradient_loss(ns["policy_gradient_loss"])
    trained = None
    if checks.solved(results):
        trained = selector.train_selector(ns["choose_modules"], ns["policy_gradient_loss"], *problems, iterations=80,
                                          batch_size=32)
    return results + selector.check_learned(trained)


def _grade_lab4(ns: dict[str, Any], data) -> list[CheckResult]:
    results = grpo.check_group_advantages(ns["group_advantages"]) + grpo.check_ppo_clip_loss(ns["ppo_clip_loss"])
    torch.manual_seed(0)
    before = float(grpo.evaluate(grpo.TinyDenoiser(), data[1]).loc["all", "PSNR"])
    after = None
    if checks.solved(results):
        run = grpo.train_grpo(ns["group_advantages"], ns["ppo_clip_loss"], *data, iterations=40, lr=0.02)
        after = float(grpo.evaluate(run.model, data[1]).loc["all", "PSNR"])
    return results + grpo.check_improved(before, after)


#: lab -> (names the exercise cells define, grader(namespace, fixtures) -> check results)
GRADERS: dict[str, tuple[tuple[str, ...], Callable[..., list[CheckResult]]]] = {
    "lab1_isp_modules": (("white_balance", "gamma"),
                         lambda ns, _: isp_modules.check_white_balance(ns["white_balance"], trials=2)
                         + isp_modules.check_gamma(ns["gamma"], trials=2)),
    "lab2_stage_selector": (("choose_modules", "policy_gradient_loss"), _grade_lab2),
    "lab3_equal_budget_tuning": (("coordinate_search",), lambda ns, _: tuning.check_search(ns["coordinate_search"])),
    "lab4_grpo_restoration": (("group_advantages", "ppo_clip_loss"), _grade_lab4),
}


def _cells(lab: str, tag: str) -> list[str]:
    nb = json.loads((NOTEBOOKS / f"{lab}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def _namespace(lab: str, *, solutions: bool) -> dict[str, Any]:
    ns: dict[str, Any] = {"torch": torch, "np": np, "math": math, "solutions": solutions}
    for source in _cells(lab, "exercise"):
        exec(compile(source, f"{lab}:exercise", "exec"), ns)  # noqa: S102 - the notebook's own cells
    if solutions:
        for source in _cells(lab, "solution"):
            exec(compile(source, f"{lab}:solution", "exec"), ns)  # noqa: S102
    return ns


def _fixtures(lab: str, request) -> Any:
    return {"lab2_stage_selector": "lab2_problems", "lab4_grpo_restoration": "lab4_data"}.get(lab)


@pytest.mark.parametrize("lab", LABS)
def test_every_exercise_has_a_stub_and_a_folded_solution(lab):
    nb = json.loads((NOTEBOOKS / f"{lab}.ipynb").read_text())
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in nb["cells"]]
    assert tags[0] == {"colab-install"} and tags[1] == {"parameters"}
    exercises, solutions = _cells(lab, "exercise"), _cells(lab, "solution")
    assert len(exercises) == len(solutions) == len(GRADERS[lab][0])
    assert all("raise NotImplementedError(" in s and '"""' in s for s in exercises), "stubs raise, with a docstring"
    assert all({"solution", "hide-input"} <= t for t in tags if "solution" in t), "solutions are folded"
    for name, solution in zip(GRADERS[lab][0], solutions, strict=True):
        assert f"def {name}_solution(" in solution and f"{name} = {name}_solution" in solution
    params = runner.declared_parameters(NOTEBOOKS / f"{lab}.ipynb")
    assert params["solutions"] is False, "a student gets the stubs by default"
    last = "".join(nb["cells"][-1]["source"])
    assert "if solutions:\n    require(all_results)" in last and "run.write(" in last


@pytest.mark.parametrize("lab", LABS)
def test_stubs_fail_their_checks_with_a_message(lab, request):
    ns = _namespace(lab, solutions=False)
    fixture = _fixtures(lab, request)
    results = GRADERS[lab][1](ns, request.getfixturevalue(fixture) if fixture else None)
    assert results and all(isinstance(r, CheckResult) for r in results)
    failed = [r for r in results if not r.passed]
    assert failed == results, f"checks a stub passes: {[r.name for r in results if r.passed]}"
    assert all(len(r.message) > 20 for r in failed), failed
    assert any("not implemented yet" in r.message for r in failed)
    with pytest.raises(AssertionError, match="checks failed"):
        checks.require(results)


@pytest.mark.parametrize("lab", LABS)
def test_solutions_pass_their_checks(lab, request, one_thread):
    ns = _namespace(lab, solutions=True)
    fixture = _fixtures(lab, request)
    results = GRADERS[lab][1](ns, request.getfixturevalue(fixture) if fixture else None)
    assert checks.solved(results), "\n".join(f"{r.name}: {r.message}" for r in results if not r.passed)
    checks.require(results)


# -- mutants: a broken solution must fail the check meant to catch it ------------------------------
def test_lab1_checks_catch_a_missing_clamp_and_a_broken_gradient():
    def unclamped(image, gains):
        return image * gains[:, :, None, None]

    def detached(image, p):
        return torch.tensor((image.clamp_min(1e-3) ** p.clamp(1 / 3, 3)[:, :, None, None]).detach().numpy())

    wb = {r.name: r for r in isp_modules.check_white_balance(unclamped, trials=2)}
    assert not wb["white_balance: parameters outside the range are clamped"].passed
    assert "clamp each gain" in wb["white_balance: parameters outside the range are clamped"].message
    assert not wb["white_balance: output clamped to [0, 1]"].passed
    assert wb["white_balance: gradcheck (float64)"].passed  # the gradient of x * g is right where no clamp acts
    gm = {r.name: r for r in isp_modules.check_gamma(detached, trials=2)}
    assert not gm["gamma: gradcheck (float64)"].passed
    assert gm["gamma: values (2 random inputs, parameters in range)"].passed


def test_lab1_checks_report_a_wrong_shape_without_raising():
    results = isp_modules.check_white_balance(lambda image, gains: image * gains, trials=1)
    assert not any(r.passed for r in results)
    assert "reshape it to (B, 3, 1, 1)" in results[0].message


def test_lab2_flipped_policy_gradient_does_not_learn(lab2_problems, one_thread):
    def flipped(log_probs, rewards, baseline):
        return -selector.reference_policy_gradient_loss(log_probs, rewards, baseline)

    grads = {r.name: r for r in selector.check_policy_gradient_loss(flipped)}
    assert not grads["policy_gradient_loss: value"].passed
    assert "sign is flipped" in grads["policy_gradient_loss: value"].message
    trained = selector.train_selector(selector.reference_choose, flipped, *lab2_problems, iterations=80, batch_size=32)
    learned = selector.check_learned(trained)
    assert not learned[0].passed, learned[0].message
    # ... while the correct loss, same data and steps, learns
    good = selector.train_selector(selector.reference_choose, selector.reference_policy_gradient_loss, *lab2_problems,
                                   iterations=80, batch_size=32)
    assert checks.solved(selector.check_learned(good))


def test_lab2_checks_catch_an_undetached_advantage_and_argmax_sampling():
    def undetached(log_probs, rewards, baseline):
        return -((rewards - baseline) * log_probs.sum(1)).mean()

    def argmax(logits, generator):
        a = logits.argmax(1)
        return a, torch.log_softmax(logits, 1).gather(1, a[:, None]).squeeze(1)

    loss = {r.name: r for r in selector.check_policy_gradient_loss(undetached)}
    assert loss["policy_gradient_loss: value"].passed and not loss["policy_gradient_loss: advantage detached"].passed
    choose = {r.name.split(" (")[0]: r for r in selector.check_choose_modules(argmax, draws=2000)}
    assert not choose["choose_modules: sampling frequencies"].passed


def test_lab3_budget_is_enforced_and_overspending_is_reported():
    obj = tuning.CountedObjective(tuning.quadratic(np.zeros(3)), dim=3, budget=2)
    assert obj(np.ones((2, 3))).tolist() == [3.0, 3.0] and obj.left == 0
    with pytest.raises(tuning.BudgetExceeded, match="budget of 2"):
        obj(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        tuning.CountedObjective(tuning.quadratic(np.zeros(3)), dim=3, budget=2)(np.zeros((1, 4)))

    def greedy_without_a_budget(objective, dim, budget):
        x = np.zeros(dim)
        best = float(objective(x[None])[0])
        for _ in range(budget):
            objective(x[None])
        return x, best

    (result,) = tuning.check_search(greedy_without_a_budget)
    assert not result.passed and "objective.left" in result.message


def test_lab3_comparison_has_every_method(one_thread):
    from ispbench.chapters import rlpixtuner as ev

    pairs = tuning.random_target_eval_set("test", n=2, size=16, seed=1234)
    ns = _namespace("lab3_equal_budget_tuning", solutions=True)
    policy, _ = ev.rlpixtuner_policy(variant="td3bc")
    curves = tuning.equal_budget_curves(pairs, ns["coordinate_search"], {"TD3+BC": policy}, budget=10)
    assert set(curves.method) == {"Greedy Search", "CMAES", "Random Search", tuning.YOUR_SEARCH, "TD3+BC"}
    mine = curves[curves.method == tuning.YOUR_SEARCH]
    greedy = curves[curves.method == "Greedy Search"]
    # the solution follows the package's greedy search rule for rule: the same curve
    assert np.allclose(mine.sort_values(["item", "queries"]).PSNR.to_numpy(),
                       greedy.sort_values(["item", "queries"]).PSNR.to_numpy(), atol=1e-4)
    table = tuning.budget_table(ev.curve_summary(curves), budgets=(1, 10))
    assert list(table.columns) == [1, 10]


def test_lab4_flipped_advantage_does_not_improve(lab4_data, one_thread):
    def flipped(rewards, group_size):
        return -grpo.reference_group_advantages(rewards, group_size)

    assert not grpo.check_group_advantages(flipped)[0].passed
    torch.manual_seed(0)
    before = float(grpo.evaluate(grpo.TinyDenoiser(), lab4_data[1]).loc["all", "PSNR"])
    run = grpo.train_grpo(flipped, grpo.reference_ppo_clip_loss, *lab4_data, iterations=40, lr=0.02)
    (improved,) = grpo.check_improved(before, float(grpo.evaluate(run.model, lab4_data[1]).loc["all", "PSNR"]))
    assert not improved.passed


def test_lab4_checks_catch_population_std_and_an_undetached_old_policy():
    def population(rewards, group_size):
        r = rewards.view(-1, group_size)
        return ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-8)).flatten()

    def undetached(log_prob, old_log_prob, advantages, clip_range):
        ratio = torch.exp(log_prob - old_log_prob)
        return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()

    assert "population std" in grpo.check_group_advantages(population)[0].message
    ppo = {r.name: r for r in grpo.check_ppo_clip_loss(undetached)}
    assert ppo["ppo_clip_loss: value"].passed and not ppo["ppo_clip_loss: old log-probabilities detached"].passed


def test_tiny_denoiser_replays_its_actions():
    torch.manual_seed(0)
    model = grpo.TinyDenoiser()
    x = torch.rand(3, 3, 16, 16)
    out, log_prob = model(x, stochastic=True)
    again, replayed = model(x, actions=model.last_actions)
    assert torch.allclose(out, again) and torch.allclose(log_prob, replayed)
    det, none = model(x)
    assert none is None and det.shape == x.shape


def test_report_require_and_frame():
    ok, bad = CheckResult("a", True, "fine"), CheckResult("b", False, "expected 1, got 2")
    assert checks.report(ok, [bad]) == [ok, bad]
    assert checks.solved([ok]) and not checks.solved([ok, bad]) and not checks.solved([])
    with pytest.raises(AssertionError, match=r"1 of 2 checks failed:\n  ✗ b: expected 1, got 2"):
        checks.require([ok, bad])
    with pytest.raises(AssertionError, match="no check results"):
        checks.require([])
    assert list(checks.results_frame([ok, bad]).columns) == ["check", "passed", "message"]
    with pytest.raises(TypeError, match="CheckResult"):
        checks.report("not a result")


# -- whole notebooks ----------------------------------------------------------------------------
# (the labs solved under smoke: tests/test_book.py, from the one smoke run of every notebook)
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_lab_runs_with_the_stubs_and_reports_what_is_missing(lab, tmp_path, monkeypatch):
    """What a student runs first (`ispbench run labs/... -p solutions false`): no crash, failed checks recorded."""
    monkeypatch.setenv("ISPBENCH_RESULTS", str(tmp_path))
    (report,) = runner.run([f"labs/{lab}"], profile="smoke", overrides={"solutions": False}, results_root=tmp_path)
    assert report.status == "executed", str(report.error)
    result = json.loads((tmp_path / "smoke" / report.slot / "result.json").read_text())
    rows = result["tables"]["checks"]
    assert rows and not any(row["passed"] for row in rows)
