"""Lab 3: tune the 9-slider finishing pipeline to a goal at an equal query budget.

Every method gets the same black box: a render of the finishing pipeline
(:func:`ispbench.ops.finishing.finish`) scored by its MSE to the goal, and the same number of
queries. The student writes a budgeted coordinate search against :class:`CountedObjective`, which
counts every query and refuses one beyond the budget (:class:`BudgetExceeded`):

* ``coordinate_search(objective, dim, budget) -> (best_x (dim,), best_loss)``: start at the identity
  (all zeros), try ``x +- step`` along each slider in turn, keep a move that lowers the loss, halve
  ``step`` after a sweep without improvement; never ask for more than ``budget`` queries.

:func:`check_search` runs it on a separable quadratic (budget respected, start at zero, honest
bookkeeping, close to the optimum) and on one finishing goal (at least as good as random search
with the same budget). :func:`equal_budget_curves` then puts it beside CMA-ES, greedy and random
search (:mod:`ispbench.finishing_baselines.search`) and the shipped RLPixTuner policies (10 queries,
:func:`ispbench.chapters.rlpixtuner.policy_curves`): best PSNR after 1 ... ``budget`` queries.

Example:
    >>> obj = CountedObjective(quadratic(np.full(9, 0.5)), dim=9, budget=2)
    >>> obj(np.zeros((1, 9))).round(2).tolist(), obj.left
    ([2.25], 1)
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ispbench.chapters import rlpixtuner as ev
from ispbench.data.photos import EvalSet, random_target_eval_set
from ispbench.finishing_baselines.search import SearchResult, best_psnr_by_budget, psnr_from_mse, random_search
from ispbench.labs.checks import CheckResult, NotRun, call
from ispbench.methods.rlpixtuner.inference import Policy
from ispbench.ops.finishing import finish

#: Sliders of the finishing pipeline.
N_SLIDERS = 9
#: Label of the student's search in the comparison.
YOUR_SEARCH = "Your coordinate search"

LossFn = Callable[[np.ndarray], np.ndarray]


class BudgetExceeded(RuntimeError):
    """A search asked :class:`CountedObjective` for more queries than its budget."""


class CountedObjective:
    """A black-box loss ``(N, dim) -> (N,)`` to minimise, with a query budget.

    Every row of a call is one query. Actions are clipped to ``[-1, 1]`` (the sliders' range).
    A call that would go past the budget raises :class:`BudgetExceeded` and counts nothing.

    Attributes:
        queries: queries made so far; ``left``: ``budget - queries``.
        history: the loss of every query, in order; ``points``: the (clipped) actions queried.
    """

    def __init__(self, loss: LossFn, dim: int, budget: int) -> None:
        if int(dim) < 1 or int(budget) < 1:
            raise ValueError(f"dim and budget must be >= 1, got dim={dim}, budget={budget}")
        self.loss, self.dim, self.budget = loss, int(dim), int(budget)
        self.queries = 0
        self.history: list[float] = []
        self.points: list[np.ndarray] = []

    @property
    def left(self) -> int:
        return self.budget - self.queries

    def __call__(self, actions: np.ndarray | Sequence[float]) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"objective: actions must have shape (N, {self.dim}) (one row per query), got {a.shape}")
        if self.queries + a.shape[0] > self.budget:
            raise BudgetExceeded(f"objective: {a.shape[0]} more queries asked after {self.queries} with a budget of "
                                 f"{self.budget}; check objective.left before each query")
        a = np.clip(a, -1.0, 1.0)
        values = np.asarray(self.loss(a), dtype=np.float64).reshape(-1)
        self.queries += a.shape[0]
        self.history.extend(values.tolist())
        self.points.extend(row.copy() for row in a)
        return values


def quadratic(centre: np.ndarray) -> LossFn:
    """The separable toy loss ``sum_k (x_k - centre_k)^2`` per row."""
    c = np.asarray(centre, dtype=np.float64)
    return lambda a: ((np.asarray(a, dtype=np.float64) - c) ** 2).sum(axis=1)


def finishing_loss(image: torch.Tensor, goal: torch.Tensor) -> LossFn:
    """MSE of ``finish(image, actions)`` to ``goal`` per row of actions ``(N, 9)``; ``image``, ``goal``: ``(3, H, W)``."""
    if image.dim() != 3 or image.shape != goal.shape:
        raise ValueError(f"image and goal must be (3, H, W) of one shape, got {tuple(image.shape)}, {tuple(goal.shape)}")

    @torch.no_grad()
    def loss(actions: np.ndarray) -> np.ndarray:
        a = torch.as_tensor(actions, dtype=torch.float32)
        out = finish(image[None].expand(a.shape[0], -1, -1, -1), a).clamp(0, 1)
        return (out - goal[None]).pow(2).flatten(1).mean(1).double().numpy()

    return loss


SearchFn = Callable[[CountedObjective, int, int], tuple[np.ndarray, float]]


def _run_search(name: str, fn: SearchFn, objective: CountedObjective) -> tuple[np.ndarray, float] | CheckResult:
    try:
        out = call(name, fn, objective, objective.dim, objective.budget,
                   hint="the search receives (objective, dim, budget) and returns (best_x, best_loss)")
    except NotRun as err:
        if "BudgetExceeded" in err.result.message:
            return CheckResult(name, False, f"{err.result.message.split('. Hint')[0]}. Hint: stop when "
                                            "objective.left == 0 (inside the sweep too, not only between sweeps)")
        return err.result
    if not (isinstance(out, tuple) and len(out) == 2):
        return CheckResult(name, False, f"expected a tuple (best_x, best_loss), got {type(out).__name__}")
    x, loss = out
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (objective.dim,):
        return CheckResult(name, False, f"expected best_x of shape ({objective.dim},), got {x.shape}")
    try:
        return x, float(loss)
    except (TypeError, ValueError):
        return CheckResult(name, False, f"expected best_loss to be a number, got {type(loss).__name__}")


def check_search(fn: SearchFn, *, seed: int = 0, image_size: int = 32, finishing_budget: int = 100) -> list[CheckResult]:
    """Check a student's ``coordinate_search(objective, dim, budget) -> (best_x, best_loss)``.

    * the budget: budgets 1, 7 and 50 on a 9-D quadratic never raise :class:`BudgetExceeded`;
    * the start: the first query is the identity (all zeros), so the result never is worse than the input;
    * the bookkeeping: the returned loss is the best in the query history and the loss at ``best_x``;
    * the quadratic: loss below 1e-2 with 200 queries (centre ``U(-0.8, 0.8)^9``);
    * the finishing goal: on a Random-Target pair (``image_size`` px) the PSNR after
      ``finishing_budget`` queries is at least random search's with the same budget.

    Returns:
        One :class:`~ispbench.labs.checks.CheckResult` per check; never raises on a broken ``fn``.
    """
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.8, 0.8, N_SLIDERS)
    loss = quadratic(centre)
    results: list[CheckResult] = []
    name = "coordinate_search: respects the budget"
    for budget in (1, 7, 50):
        obj = CountedObjective(loss, N_SLIDERS, budget)
        out = _run_search(name, fn, obj)
        if isinstance(out, CheckResult):
            return [CheckResult(out.name, False, f"with budget {budget}: {out.message}")]
    results.append(CheckResult(name, True, "budgets 1, 7 and 50: never asked for more"))
    obj = CountedObjective(loss, N_SLIDERS, 200)
    out = _run_search("coordinate_search: 9-D quadratic", fn, obj)
    if isinstance(out, CheckResult):
        return results + [out]
    x, best = out
    first = obj.points[0] if obj.points else None
    results.append(CheckResult("coordinate_search: starts from the identity", first is not None and not np.any(first),
                               "first query is all zeros" if first is not None and not np.any(first) else
                               f"expected the first query to be the identity (all zeros), got {np.round(first, 3).tolist()}: query it first "
                               "so the result is never worse than the untouched input"))
    at_x = float(loss(np.clip(x, -1, 1)[None])[0])
    honest = bool(obj.history) and abs(best - min(obj.history)) <= 1e-9 and abs(best - at_x) <= 1e-9
    results.append(CheckResult("coordinate_search: reports its best query", honest,
                               f"best_loss {best:.3g} is the best of {obj.queries} queries and the loss at best_x"
                               if honest else
                               f"best_loss {best:.6g}, the best queried {min(obj.history, default=float('nan')):.6g}, "
                               f"the loss at best_x {at_x:.6g}: they must agree. Hint: update best_x and best_loss "
                               "together, only when a query improves"))
    ok = best < 1e-2
    results.append(CheckResult("coordinate_search: solves a separable quadratic", ok,
                               f"loss {best:.2e} after {obj.queries} of 200 queries (expected < 1e-2)" +
                               ("" if ok else ". Hint: move by +-step along one slider at a time, keep a move that "
                                              "lowers the loss, and halve step after a full sweep without one")))
    pair = random_target_eval_set("test", n=1, size=image_size, seed=1234 + seed)
    image, goal = pair.inputs[0], pair.goals[0]
    obj = CountedObjective(finishing_loss(image, goal), N_SLIDERS, finishing_budget)
    out = _run_search("coordinate_search: a finishing goal", fn, obj)
    if isinstance(out, CheckResult):
        return results + [out]
    ours = float(psnr_from_mse(out[1]))
    rand = float(psnr_from_mse(random_search(image, goal, finishing_budget, seed=seed).loss))
    ok = ours >= rand
    results.append(CheckResult("coordinate_search: a finishing goal", ok,
                               f"PSNR {ours:.2f} dB after {obj.queries} queries vs random search {rand:.2f} dB "
                               f"({finishing_budget} queries, {image_size} px, expected at least as good)"))
    return results


def search_curves_of(fn: SearchFn, eval_set: EvalSet, budget: int, budgets: Sequence[int],
                     method: str = YOUR_SEARCH) -> pd.DataFrame:
    """Best-so-far PSNR of a search written against :class:`CountedObjective` on every pair of ``eval_set``:
    long rows ``method, kind, seed, item, photo, queries, PSNR`` (as :func:`ispbench.chapters.rlpixtuner.search_curves`)."""
    rows = []
    for i, (image, goal, photo) in enumerate(zip(eval_set.inputs, eval_set.goals, eval_set.names, strict=True)):
        obj = CountedObjective(finishing_loss(image, goal), N_SLIDERS, budget)
        fn(obj, N_SLIDERS, budget)
        res = SearchResult(torch.zeros(N_SLIDERS), image, min(obj.history), obj.queries, obj.history)
        for k, value in zip(budgets, best_psnr_by_budget(res, budgets), strict=True):
            rows.append({"method": method, "kind": "best", "seed": 0, "item": i, "photo": photo,
                         "queries": int(k), "PSNR": float(value)})
    return pd.DataFrame(rows)


def equal_budget_curves(eval_set: EvalSet, search: SearchFn | None, policies: Mapping[str, Policy], *, budget: int = 200,
                        seeds: Sequence[int] = (0,), budgets: Sequence[int] | None = None) -> pd.DataFrame:
    """PSNR against queries for CMA-ES, greedy and random search, ``search`` (the student's; skipped when
    None) and each policy in ``policies`` (label -> shipped :class:`~ispbench.methods.rlpixtuner.inference.Policy`,
    10 queries: ``final`` and ``best`` rows).

    Returns:
        Long rows ``method, kind, seed, item, photo, queries, PSNR``.
    """
    budgets = [b for b in (budgets or ev.BUDGETS) if b <= budget]
    runs = ev.run_searches(eval_set, seeds=list(seeds), budget=budget, progress=None)
    frames = [ev.search_curves(runs, eval_set, budgets)]
    if search is not None:
        frames.append(search_curves_of(search, eval_set, budget, budgets))
    for label, policy in policies.items():
        frames.append(ev.policy_curves([policy], eval_set, method=label))
    return pd.concat(frames, ignore_index=True)


def budget_table(curve_stats: pd.DataFrame, budgets: Sequence[int] = ev.BUDGETS) -> pd.DataFrame:
    """Mean PSNR (dB) per method and kind (rows) at each budget (columns) from :func:`ispbench.chapters.rlpixtuner.curve_summary`."""
    at = curve_stats[curve_stats.queries.isin(list(budgets))]
    return at.pivot_table(index=["method", "kind"], columns="queries", values="mean", sort=False).round(2)


__all__ = ["BudgetExceeded", "CountedObjective", "N_SLIDERS", "YOUR_SEARCH", "budget_table", "check_search",
           "equal_budget_curves", "finishing_loss", "quadratic", "search_curves_of"]
