"""The book's teaching labs: toy problems and the check functions behind each lab's exercises.

Each lab is a notebook under ``notebooks/labs/``; its exercise cells hold stubs a student fills in,
and its check cells call one of these modules, which grade the student's function and explain what
is wrong instead of crashing on a stub:

* :mod:`.checks`: :class:`~.checks.CheckResult`, :func:`~.checks.report` (prints one line per check),
  :func:`~.checks.require` (raises when a check failed; the labs call it when run with their solutions);
* :mod:`.isp_modules` (lab 1): white balance and gamma against :mod:`ispbench.ops.modules`, with
  ``gradcheck``;
* :mod:`.selector` (lab 2): a two-stage module selector trained with REINFORCE on dark and
  well-exposed crops;
* :mod:`.tuning` (lab 3): a budgeted coordinate search and the equal-budget comparison with CMA-ES,
  greedy and random search and the shipped RLPixTuner policies;
* :mod:`.grpo` (lab 4): IRPO's group-relative advantage and PPO-clip loss, and GRPO on a tiny
  stochastic denoiser.
"""

from ispbench.labs.checks import CheckResult, report, require, results_frame, solved

__all__ = ["CheckResult", "report", "require", "results_frame", "solved"]
