"""Zeroth-order baselines for photo-finishing tuning: CMA-ES, greedy coordinate and random search.

All treat the pipeline as a black box with a fixed query budget (200 in the paper) and
minimise the MSE to the goal (= maximise PSNR) over the 9 actions in [-1, 1], starting from the
identity (zero actions). They return the best parameters seen and that image.

* :func:`cmaes_search`: CMA-ES (Hansen) with the maintained ``cma`` package; the paper used
  pymoo's CMA-ES (Appendix C.3), which wraps the same algorithm. Each generation's population
  goes through the pipeline as one batch. ``sigma0`` = 0.3, default population size
  (``4 + 3 ln 9`` = 10), bounds [-1, 1] handled by ``cma``'s boundary transformation.
* :func:`greedy_search`: coordinate search (the paper's "Greedy Search" of Table 3, [16]): for
  each slider in turn try ``x +- step``; keep a move that lowers the loss; halve ``step`` after
  a full sweep without improvement.
* :func:`random_search`: seeded uniform random actions in ``[-1, 1]^9`` (the floor every
  search method should beat).

:func:`best_psnr_by_budget` reads a result's ``history`` to give the best PSNR after the first
``k`` queries, for a curve of quality against budget from one run.

Example:
    >>> res = cmaes_search(image, goal, budget=200)          # doctest: +SKIP
    >>> res.image, res.actions, res.queries
    >>> best_psnr_by_budget(res, [1, 50, 200])               # doctest: +SKIP
    array([14.2, 27.9, 33.1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ispbench.ops.finishing import finish

Pipeline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
N_PARAMS = 9
#: PSNR reported for a perfect match (MSE 0), and the cap of every PSNR here.
MAX_PSNR_DB = 100.0
#: Random-search candidates sent through the pipeline per batch (bounds memory, not results).
_RANDOM_BATCH = 64


def _pipeline(pipeline: Pipeline | None) -> Pipeline:
    if pipeline is not None:
        return pipeline
    return finish


@dataclass
class SearchResult:
    """Best found ``actions (9,)``, its ``image (3, H, W)``, ``loss`` (MSE), ``queries`` used, loss ``history``."""

    actions: torch.Tensor
    image: torch.Tensor
    loss: float
    queries: int
    history: list[float]


class _Objective:
    """Counts queries, remembers the best candidate."""

    def __init__(self, image: torch.Tensor, goal: torch.Tensor, pipeline: Pipeline, budget: int) -> None:
        if image.dim() != 3 or image.shape[0] != 3 or image.shape != goal.shape:
            raise ValueError(f"image and goal must be (3, H, W) of one shape, got {tuple(image.shape)}, {tuple(goal.shape)}")
        self.image, self.goal, self.pipeline, self.budget = image.float(), goal.float(), pipeline, int(budget)
        self.queries, self.best_loss, self.history = 0, float("inf"), []
        self.best_actions = torch.zeros(N_PARAMS)
        self.best_image = image.clone()

    @property
    def left(self) -> int:
        return self.budget - self.queries

    @torch.no_grad()
    def __call__(self, actions: np.ndarray | torch.Tensor) -> np.ndarray:
        a = torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(-1, N_PARAMS).clamp(-1, 1)
        a = a[: max(self.left, 0)]
        if a.shape[0] == 0:
            return np.zeros(0)
        out = self.pipeline(self.image[None].expand(a.shape[0], -1, -1, -1), a).clamp(0, 1)
        self.queries += a.shape[0]
        loss = (out - self.goal[None]).pow(2).flatten(1).mean(1)
        i = int(loss.argmin())
        if float(loss[i]) < self.best_loss:
            self.best_loss, self.best_actions, self.best_image = float(loss[i]), a[i].clone(), out[i].clone()
        self.history.extend(loss.tolist())
        return loss.numpy().astype(np.float64)

    def result(self) -> SearchResult:
        return SearchResult(self.best_actions, self.best_image, self.best_loss, self.queries, self.history)


def cmaes_search(image: torch.Tensor, goal: torch.Tensor, budget: int = 200, *, sigma0: float = 0.3,
                 popsize: int | None = None, seed: int = 0, pipeline: Pipeline | None = None) -> SearchResult:
    """CMA-ES over the 9 actions with at most ``budget`` pipeline queries (one image each).

    Args:
        image, goal: ``(3, H, W)`` in [0, 1].
        budget: maximum pipeline queries (paper: 200).
        sigma0: initial step size in action units.
        popsize: population size (default ``cma``'s ``4 + 3 ln 9``).
        seed: ``cma`` random seed (>0 is used as given; 0 becomes 1 since cma treats 0 as "random").
    """
    import cma

    obj = _Objective(image, goal, _pipeline(pipeline), budget)
    opts = {"bounds": [-1.0, 1.0], "seed": int(seed) + 1, "verbose": -9, "maxfevals": budget, "tolfun": 1e-12,
            "tolx": 1e-8}
    if popsize:
        opts["popsize"] = int(popsize)
    es = cma.CMAEvolutionStrategy(np.zeros(N_PARAMS), sigma0, opts)
    obj(np.zeros((1, N_PARAMS)))  # the start point counts as a query too
    while obj.left > 0 and not es.stop():
        xs = es.ask()
        n = min(len(xs), obj.left)
        losses = obj(np.asarray(xs[:n]))
        if n < len(xs):  # budget exhausted mid-generation: stop without a partial tell
            break
        es.tell(xs, losses.tolist())
    return obj.result()


def greedy_search(image: torch.Tensor, goal: torch.Tensor, budget: int = 200, *, step: float = 0.5,
                  min_step: float = 1e-3, pipeline: Pipeline | None = None) -> SearchResult:
    """Greedy coordinate search with at most ``budget`` queries (see module docstring)."""
    obj = _Objective(image, goal, _pipeline(pipeline), budget)
    x = np.zeros(N_PARAMS, np.float32)
    cur = float(obj(x[None])[0])
    while obj.left > 0 and step >= min_step:
        improved = False
        for k in range(N_PARAMS):
            for sign in (1.0, -1.0):
                if obj.left <= 0:
                    break
                cand = x.copy()
                cand[k] = np.clip(cand[k] + sign * step, -1, 1)
                if cand[k] == x[k]:
                    continue
                loss = float(obj(cand[None])[0])
                if loss < cur:
                    x, cur, improved = cand, loss, True
                    break
        if not improved:
            step /= 2
    return obj.result()


def random_search(image: torch.Tensor, goal: torch.Tensor, budget: int = 200, *, seed: int = 0,
                  pipeline: Pipeline | None = None) -> SearchResult:
    """Uniform random search: the identity, then ``budget - 1`` actions drawn from ``U(-1, 1)^9``.

    The identity (zero actions) is the first query, as for the other searches, so the result is
    never worse than the input. Candidates are drawn with ``np.random.default_rng(seed)`` all at
    once and evaluated in batches, so the result depends on ``seed`` and ``budget`` only.

    Args:
        image, goal: ``(3, H, W)`` in [0, 1].
        budget: pipeline queries (>= 1), all of them used.
        seed: seed of the candidates' generator.
        pipeline: ``(B,3,H,W), (B,9) -> (B,3,H,W)``; default ``ispbench.ops.finishing.finish``.

    Returns:
        :class:`SearchResult` with ``queries == budget`` and a ``history`` of ``budget`` MSEs.

    Example:
        >>> res = random_search(image, goal, budget=50, seed=1)   # doctest: +SKIP
        >>> res.queries, len(res.history)
        (50, 50)
    """
    if int(budget) < 1:
        raise ValueError(f"budget must be >= 1 (the identity is the first query), got {budget}")
    obj = _Objective(image, goal, _pipeline(pipeline), int(budget))
    candidates = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(int(budget) - 1, N_PARAMS))
    obj(np.zeros((1, N_PARAMS)))
    for start in range(0, candidates.shape[0], _RANDOM_BATCH):
        obj(candidates[start : start + _RANDOM_BATCH])
    return obj.result()


def psnr_from_mse(mse: np.ndarray | float) -> np.ndarray:
    """PSNR in dB of images in [0, 1] from their MSE: ``10 log10(1 / mse)``, capped at :data:`MAX_PSNR_DB`.

    Args:
        mse: one MSE or an array of them (>= 0).

    Returns:
        float64 array of the shape of ``mse``; an MSE of 0 gives 100 dB.

    Example:
        >>> psnr_from_mse(np.array([0.01, 0.0]))
        array([ 20., 100.])
    """
    mse = np.asarray(mse, dtype=np.float64)
    if not np.isfinite(mse).all() or (mse < 0).any():
        raise ValueError(f"mse must be finite and >= 0, got {mse}")
    floor = 10.0 ** (-MAX_PSNR_DB / 10.0)
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse, floor)), MAX_PSNR_DB)


def best_psnr_by_budget(result: SearchResult, budgets: Sequence[int]) -> np.ndarray:
    """Best PSNR (dB) among the first ``k`` queries of a search, for each ``k`` in ``budgets``.

    Read from ``result.history`` (one MSE per query, in query order); a ``k`` beyond the queries
    made uses all of them. PSNR as :func:`psnr_from_mse` (images in [0, 1], capped at 100 dB).

    Args:
        result: a :class:`SearchResult` with at least one query in its history.
        budgets: query counts ``k`` (each >= 1), in any order.

    Returns:
        float64 array ``(len(budgets),)``; non-decreasing in ``k``, and at ``k >= result.queries``
        equal to the PSNR of ``result.loss``.

    Example:
        >>> res = SearchResult(torch.zeros(9), torch.zeros(3, 1, 1), 0.001, 3, [0.1, 0.01, 0.001])
        >>> best_psnr_by_budget(res, [1, 2, 3, 10])
        array([10., 20., 30., 30.])
    """
    history = np.asarray(result.history, dtype=np.float64)
    if history.ndim != 1 or history.size == 0:
        raise ValueError(f"result.history must hold at least one query's MSE, got {len(result.history)} entries")
    ks = [int(k) for k in budgets]
    if any(k < 1 for k in ks):
        raise ValueError(f"budgets must all be >= 1, got {list(budgets)}")
    best_so_far = np.minimum.accumulate(history)
    last = np.minimum(np.asarray(ks, dtype=np.int64), history.size) - 1
    return psnr_from_mse(best_so_far[last])


SEARCH_METHODS: dict[str, Callable[..., SearchResult]] = {
    "cmaes": cmaes_search, "greedy": greedy_search, "random": random_search,
}
#: Methods whose result depends on a seed (``search_batch`` gives image ``i`` the seed ``seed + i``).
_SEEDED = ("cmaes", "random")


def search_batch(method: str, images: torch.Tensor, goals: torch.Tensor, budget: int = 200, seed: int = 0,
                 pipeline: Pipeline | None = None) -> list[SearchResult]:
    """Run ``method`` (``"cmaes"``, ``"greedy"`` or ``"random"``) independently on each of ``B`` images.

    ``images``, ``goals``: ``(B, 3, H, W)``. Seeded methods use seed ``seed + i`` for image ``i``.
    """
    fn = SEARCH_METHODS.get(method)
    if fn is None:
        raise ValueError(f"method must be one of {sorted(SEARCH_METHODS)}, got {method!r}")
    out = []
    for i in range(images.shape[0]):
        kw = {"seed": seed + i} if method in _SEEDED else {}
        out.append(fn(images[i], goals[i], budget, pipeline=pipeline, **kw))
    return out


__all__ = ["SearchResult", "cmaes_search", "greedy_search", "random_search", "search_batch", "SEARCH_METHODS",
           "best_psnr_by_budget", "psnr_from_mse", "MAX_PSNR_DB"]
