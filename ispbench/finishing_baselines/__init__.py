"""Baselines of RLPixTuner's photo-finishing tuning task (Tables 1-3).

* :mod:`.search`: zeroth-order search with a query budget: CMA-ES (``cma`` package), greedy
  coordinate search and uniform random search; :func:`best_psnr_by_budget` for quality against
  budget from one run.
* :mod:`.projection`: projection of targets onto the pipeline's reachable set (the paper's
  Expert-C projection, a large-budget CMA-ES) and the projected-expert evaluation set.
* :mod:`.proxy`: first-order search through a learned differentiable proxy of the pipeline:
  monolithic (one UNet) and cascaded (one small proxy per module).
"""

from ispbench.finishing_baselines.projection import project_onto_pipeline, projected_expert_eval_set
from ispbench.finishing_baselines.proxy import CascadedProxy, MonolithicProxy, get_proxy, proxy_search
from ispbench.finishing_baselines.search import (
    SearchResult,
    best_psnr_by_budget,
    cmaes_search,
    greedy_search,
    random_search,
    search_batch,
)

__all__ = ["cmaes_search", "greedy_search", "random_search", "search_batch", "best_psnr_by_budget", "SearchResult",
           "project_onto_pipeline", "projected_expert_eval_set", "MonolithicProxy", "CascadedProxy", "get_proxy",
           "proxy_search"]
