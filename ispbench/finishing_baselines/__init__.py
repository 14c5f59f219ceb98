"""Baselines of RLPixTuner's photo-finishing tuning task (Tables 1-3).

* :mod:`.search`: zeroth-order search with a query budget: CMA-ES (``cma`` package) and greedy
  coordinate search.
* :mod:`.proxy`: first-order search through a learned differentiable proxy of the pipeline:
  monolithic (one UNet) and cascaded (one small proxy per module).
"""

from ispbench.finishing_baselines.proxy import CascadedProxy, MonolithicProxy, get_proxy, proxy_search
from ispbench.finishing_baselines.search import SearchResult, cmaes_search, greedy_search, search_batch

__all__ = ["cmaes_search", "greedy_search", "search_batch", "SearchResult", "MonolithicProxy", "CascadedProxy",
           "get_proxy", "proxy_search"]
