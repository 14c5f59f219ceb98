"""What every notebook does first and last: capture its parameters, start a timer, seed, write results.

A notebook's first code cell after the ``parameters`` cell reads::

    PARAM_NAMES = ["profile", "seed", "device", ...]  # the names of the parameters cell
    from ispbench.notebook import start_notebook

    run = start_notebook("adaptiveisp/table1", globals())

and its last cell ``run.write(data=..., tables=..., metrics=...)``. ``PARAM_NAMES`` lists the
names of the notebook's ``parameters`` cell (``tests/test_notebook_parameters.py`` checks it
matches); papermill injects overrides of those names into the notebook's globals, so the
values are read from there after injection.

On Colab the notebooks' first cell sets ``$ISPBENCH_DEVICE=auto`` (:data:`DEVICE_ENV`), and
:func:`start_notebook` then runs on the runtime's GPU when it has one (:func:`resolve_device`).
``ispbench run`` removes the variable from its kernels: there the ``device`` parameter decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

import torch

from ispbench import parameters as declarations
from ispbench.results import Timer, write_results
from ispbench.seeding import seed_everything

#: The profile whose runs are tiny and whose numbers are meaningless (the test suite's profile).
SMOKE_PROFILE = "smoke"
#: When set (the Colab install cell sets ``auto``), the device a notebook runs on, in place of its
#: ``device`` parameter: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
DEVICE_ENV = "ISPBENCH_DEVICE"


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other device unchanged.

    Example:
        >>> resolve_device("cpu"), resolve_device("auto") in ("cuda", "cpu")
        ('cpu', True)
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class NotebookRun:
    """One execution of a notebook: its id, parameters, timer and seeded generator.

    Attributes:
        name: notebook id (path under ``notebooks/`` without ``.ipynb``).
        parameters: the papermill parameters as run (``PARAM_NAMES`` read from the notebook's globals).
        timer: started by :func:`start_notebook`; ``write`` records its elapsed time.
        generator: ``torch.Generator`` seeded with ``seed`` (from :func:`~ispbench.seeding.seed_everything`).
    """

    name: str
    parameters: dict[str, Any]
    timer: Timer = field(default_factory=Timer)
    generator: torch.Generator | None = None

    @property
    def profile(self) -> str:
        return str(self.parameters.get("profile", ""))

    @property
    def seed(self) -> int:
        return int(self.parameters.get("seed", 0))

    @property
    def device(self) -> str:
        return str(self.parameters.get("device", "cpu"))

    @property
    def smoke(self) -> bool:
        """True under the smoke profile: untrained models are allowed and the numbers are meaningless."""
        return self.profile == SMOKE_PROFILE

    def write(self, *, data: str, tables: Mapping[str, Any] | None = None,
              metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the notebook's results with provenance (:func:`ispbench.results.write_results`).

        Parameters other than the profile's (see ``ispbench/profiles/parameters.yaml`` and the
        profile YAML) go to ``results/<profile>/runs/<name>-<hash>/``, never over the profile's results.

        Args:
            data: which data produced the numbers, in words.
            tables: named tables (DataFrames or lists of row dicts).
            metrics: free-form results.

        Returns:
            The path of the result JSON file.
        """
        return write_results(self.name, profile=self.profile, parameters=self.parameters, data=data, tables=tables,
                             metrics=metrics, seed=self.seed, device=self.device, wall_time_s=self.timer.elapsed)


def start_notebook(name: str, namespace: Mapping[str, Any], *, param_names: Sequence[str] | None = None,
                   torch_threads: int | None = None) -> NotebookRun:
    """Start a notebook run: timer, parameter capture, seeding.

    Args:
        name: notebook id, e.g. ``"adaptiveisp/table1"``.
        namespace: the notebook's ``globals()`` (holding the parameters, after papermill's injection).
        param_names: the parameter names; default ``namespace["PARAM_NAMES"]``.
        torch_threads: if given, ``torch.set_num_threads`` (1 is fastest on a shared CPU).

    The ``device`` parameter ``"auto"``, or ``$ISPBENCH_DEVICE`` when set (on Colab), is resolved
    with :func:`resolve_device` and written back into ``namespace["device"]``.

    Returns:
        :class:`NotebookRun` with ``parameters`` in ``param_names`` order.

    Raises:
        ValueError: no ``PARAM_NAMES`` (and no ``param_names``), or a listed parameter missing
            from ``namespace``.
        ispbench.parameters.ParameterError: (a ``ValueError``) a value its declaration in
            ``ispbench/profiles/parameters.yaml`` does not allow (a direct papermill run with
            ``-p image_size -5``); the message names the parameter.

    Example:
        >>> run = start_notebook("demo/x", {"profile": "smoke", "seed": 3}, param_names=["profile", "seed"])
        >>> run.parameters, run.smoke
        ({'profile': 'smoke', 'seed': 3}, True)
    """
    timer = Timer()
    if param_names is None:
        if "PARAM_NAMES" not in namespace:
            raise ValueError(f"namespace: notebook {name!r} defines no PARAM_NAMES (the names of its parameters "
                             "cell); define it before start_notebook or pass param_names=")
        param_names = namespace["PARAM_NAMES"]
    missing = [k for k in param_names if k not in namespace]
    if missing:
        raise ValueError(f"param_names: {missing} are listed but not defined in notebook {name!r}'s namespace "
                         "(is the parameters cell run?)")
    parameters = {k: namespace[k] for k in param_names}
    if "device" in parameters:
        wanted = os.environ.get(DEVICE_ENV) or str(parameters["device"])
        device = resolve_device(wanted)
        if device != parameters["device"]:
            print(f"device: {device} (${DEVICE_ENV}={wanted})" if os.environ.get(DEVICE_ENV) else f"device: {device}")
            parameters["device"] = device
            if isinstance(namespace, MutableMapping):  # the notebook's globals: its cells read `device`
                namespace["device"] = device
    declarations.check(name, parameters)
    generator = seed_everything(int(parameters.get("seed", 0)))
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    return NotebookRun(name, parameters, timer, generator)


__all__ = ["DEVICE_ENV", "NotebookRun", "SMOKE_PROFILE", "resolve_device", "start_notebook"]
