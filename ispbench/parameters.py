"""The notebooks' declared parameters and the profiles' values for them (foundation layer).

Every notebook parameter is declared once, in ``ispbench/profiles/parameters.yaml``: type,
default (what the notebook's ``parameters`` cell says), range or choices and a one-line
meaning. :func:`check` refuses a bad value naming the notebook, the parameter and what was
expected; ``ispbench run`` calls it before any kernel starts, :func:`ispbench.notebook.start_notebook`
again inside the notebook (for a direct papermill run).

:func:`profile_parameters` gives the full parameter set a profile runs a notebook with (declared
defaults < profile defaults < profile notebook entry); :func:`matches_profile` says whether a run's
recorded parameters are the profile's, i.e. whether its results may stand as the profile's.

Example:
    >>> check("ops/gallery", {"image_size": 128})
    >>> check("ops/gallery", {"image_size": -5})
    Traceback (most recent call last):
    ...
    ispbench.parameters.ParameterError: notebook 'ops/gallery': parameter image_size must be >= 16, got -5 (side of the sample photo in pixels)
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from ispbench.paths import PACKAGE_DIR

PROFILES_DIR = PACKAGE_DIR / "profiles"
DECLARATIONS_FILE = PROFILES_DIR / "parameters.yaml"
#: Injected into every notebook that declares it, so a notebook knows the profile it runs under.
PROFILE_PARAMETER = "profile"
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_TYPES = {"int", "float", "bool", "str", "device", "list", "float_csv"}


class ParameterError(ValueError):
    """A parameter value, a declaration or a profile that cannot be used; the message names it."""


@functools.lru_cache(maxsize=4)
def _declarations(path: str) -> dict[str, dict[str, dict[str, Any]]]:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    common = raw.get("common") or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for notebook, params in (raw.get("notebooks") or {}).items():
        merged = {**common, **(params or {})}
        for name, spec in merged.items():
            if not isinstance(spec, dict) or spec.get("type") not in _TYPES or "default" not in spec:
                raise ParameterError(f"{path}: notebook {notebook!r} parameter {name!r} needs a type "
                                     f"({', '.join(sorted(_TYPES))}) and a default, got {spec!r}")
        out[notebook] = merged
    return out


def declarations(path: Path = DECLARATIONS_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """``{notebook id: {parameter: {type, default, help, min?, max?, choices?, ...}}}``."""
    return _declarations(str(path))


def declared(notebook: str, path: Path = DECLARATIONS_FILE) -> dict[str, dict[str, Any]] | None:
    """The declarations of one notebook, or None if it has none (a test's or a tool's name)."""
    return declarations(path).get(notebook)


def _describe(spec: Mapping[str, Any]) -> str:
    kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "device": "a torch device (cpu, cuda, cuda:N, mps)", "float_csv": "comma-separated numbers",
            "list": f"a list of {'integers' if spec.get('items') == 'int' else 'strings'}"}[spec["type"]]
    bounds = []
    if "min" in spec:
        bounds.append(f">= {spec['min']}")
    if "max" in spec:
        bounds.append(f"<= {spec['max']}")
    if "multiple_of" in spec:
        bounds.append(f"a multiple of {spec['multiple_of']}")
    if "choices" in spec:
        bounds.append(f"one of {spec['choices']}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _scalar_problem(value: Any, spec: Mapping[str, Any], kind: str) -> str | None:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be " + _describe(spec)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return "must be " + _describe(spec)
    elif kind == "bool":
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind == "device":
        if not isinstance(value, str) or not _DEVICE.match(value):
            return "must be " + _describe(spec)
    elif not isinstance(value, str):
        return "must be " + _describe(spec)
    if "choices" in spec and value not in spec["choices"]:
        return f"must be one of {spec['choices']}"
    if kind in ("int", "float"):
        if "min" in spec and value < spec["min"]:
            return f"must be >= {spec['min']}"
        if "max" in spec and value > spec["max"]:
            return f"must be <= {spec['max']}"
        if "multiple_of" in spec and value % spec["multiple_of"]:
            return f"must be a multiple of {spec['multiple_of']}"
    return None


def problem(value: Any, spec: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not fit ``spec`` (``"must be ..."``), or None when it does."""
    kind = spec["type"]
    if kind == "list":
        if not isinstance(value, (list, tuple)) or not value:
            return "must be " + _describe(spec) + ", not empty"
        for item in value:
            why = _scalar_problem(item, spec, spec.get("items", "str"))
            if why:
                return f"item {item!r} {why}"
        return None
    if kind == "float_csv":
        if not isinstance(value, str):
            return "must be " + _describe(spec)
        try:
            numbers = [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            return "must be " + _describe(spec)
        if not numbers:
            return "must be " + _describe(spec) + ", not empty"
        for number in numbers:
            why = _scalar_problem(number, spec, "float")
            if why:
                return f"item {number!r} {why}"
        return None
    return _scalar_problem(value, spec, kind)


def check(notebook: str, params: Mapping[str, Any], path: Path = DECLARATIONS_FILE) -> None:
    """Refuse undeclared names and bad values of a declared notebook (others pass unchecked).

    Raises:
        ParameterError: naming the notebook, the parameter, what it must be and what it got.
    """
    specs = declared(notebook, path)
    if specs is None:
        return
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise ParameterError(f"notebook {notebook!r}: unknown parameter(s) {', '.join(unknown)}; "
                             f"declared: {', '.join(sorted(specs))} ({path.name})")
    for name, value in params.items():
        why = problem(value, specs[name])
        if why:
            raise ParameterError(f"notebook {notebook!r}: parameter {name} {why}, got {value!r} "
                                 f"({specs[name].get('help', '')})")


# ----------------------------------------------------------------------------- profiles


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """Names of the profile YAML files (``parameters.yaml`` is the declarations, not a profile)."""
    return sorted(p.stem for p in Path(profiles_dir).glob("*.yaml") if p.name != DECLARATIONS_FILE.name)


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """Read and check a profile; unknown names are refused with the list of valid ones."""
    path = Path(profiles_dir) / f"{name}.yaml"
    if name == DECLARATIONS_FILE.stem or not path.exists():
        raise ParameterError(
            f"unknown profile {name!r}; valid profiles: {', '.join(available_profiles(profiles_dir)) or '(none)'}"
        )
    profile = yaml.safe_load(path.read_text()) or {}
    for key in ("defaults", "notebooks"):
        value = profile.get(key) or {}
        if not isinstance(value, dict):
            raise ParameterError(f"{path}: field {key!r} must be a mapping, got {type(value).__name__}")
        profile[key] = value
    for notebook, params in profile["notebooks"].items():
        if params is None:
            profile["notebooks"][notebook] = {}
        elif not isinstance(params, dict):
            raise ParameterError(f"{path}: parameters of notebook {notebook!r} must be a mapping")
    profile["name"] = name
    return profile


def resolve(notebook: str, declared_names: Mapping[str, Any], profile: Mapping[str, Any],
            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Profile defaults < profile notebook parameters < ``overrides``, for the names declared.

    Defaults reach only notebooks that declare them; a notebook entry or override naming an
    undeclared parameter is refused with the valid names.
    """
    params: dict[str, Any] = {}
    if PROFILE_PARAMETER in declared_names:
        params[PROFILE_PARAMETER] = profile["name"]
    params.update({k: v for k, v in profile["defaults"].items() if k in declared_names})
    for source, values in ((f"profile {profile['name']!r}", profile["notebooks"].get(notebook, {})),
                           ("the command line", overrides or {})):
        unknown = sorted(set(values) - set(declared_names))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)} for notebook {notebook!r} (from {source}); "
                f"valid parameters: {', '.join(sorted(declared_names))}"
            )
        params.update(values)
    return params


def profile_parameters(notebook: str, profile: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any] | None:
    """Every declared parameter of ``notebook`` as ``profile`` runs it, or None when the notebook
    is not declared or the profile does not list it."""
    specs = declared(notebook)
    if specs is None or profile not in available_profiles(profiles_dir):
        return None
    spec = load_profile(profile, profiles_dir)
    if notebook not in spec["notebooks"]:
        return None
    return {**{k: v["default"] for k, v in specs.items()}, **resolve(notebook, specs, spec)}


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def matches_profile(notebook: str, profile: str, recorded: Mapping[str, Any]) -> bool:
    """True when every recorded parameter has the value ``profile`` gives it (undeclared notebooks:
    True; there is nothing to compare with)."""
    expected = profile_parameters(notebook, profile)
    if expected is None:
        return declared(notebook) is None
    return all(_same(value, expected[name]) for name, value in recorded.items() if name in expected)


def parameters_hash(params: Mapping[str, Any]) -> str:
    """Short stable hash of a parameter set (names an ad-hoc run's folder)."""
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:10]


__all__ = ["ParameterError", "available_profiles", "check", "declarations", "declared", "load_profile",
           "matches_profile", "parameters_hash", "problem", "profile_parameters", "resolve"]
