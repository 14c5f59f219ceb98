"""A trainer's documented dataclass as its command line (the one way every trainer parses arguments).

A trainer declares its arguments once, CleanRL style, as a ``@dataclass`` whose fields carry a
docstring each; groups of settings shared by several trainers are nested dataclasses (the
detection settings, TD3's hyper-parameters)::

    @dataclass
    class Args:
        detection: DetectionSettings = field(default_factory=DetectionSettings)
        \"\"\"data and frozen detector\"\"\"
        lr: float = 3e-5
        \"\"\"Adam learning rate\"\"\"

    args = parse(Args, argv, prog="ispbench train adaptiveisp")

Every leaf field becomes ``--field-name`` (underscores as dashes), nested or not, so the
command line stays flat (``--imgsz 160 --lr 1e-4``); two leaves with the same name anywhere in
the tree are a programming error, refused when the parser is built. Booleans have one syntax,
``--x`` / ``--no-x``. ``--help`` shows each field's docstring and default. Fields may be
``int``, ``float``, ``str``, ``bool`` or a nested dataclass.

:func:`from_overrides` builds the same dataclass from a flat ``{name: value}`` mapping (the
notebooks' recipes), :func:`to_argv` writes a config back as the command that reproduces it
(model cards), :func:`flat_dict` gives the flat mapping recorded in checkpoints.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")

_SCALARS = {int: int, float: float, str: str, bool: bool}


class ConfigError(ValueError):
    """An unknown name or a value of the wrong type for a trainer's configuration."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of dataclass ``cls`` (``{}`` when the source is unavailable)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _leaves(cls: type, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], type, dataclasses.Field]]:
    """(path, type, field) of every scalar field of ``cls``, nested dataclasses expanded in order."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            yield from _leaves(typ, (*path, f.name))
        elif typ in _SCALARS:
            yield (*path, f.name), typ, f
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {typ!r} (int, float, str, bool or a dataclass)")


@cache
def _leaf_table(cls: type) -> dict[str, tuple[tuple[str, ...], type, dataclasses.Field, type]]:
    """leaf name -> (path, type, field, owning dataclass); refuses a name used twice in the tree."""
    table: dict[str, tuple[tuple[str, ...], type, dataclasses.Field, type]] = {}
    for path, typ, f in _leaves(cls):
        owner = cls
        for part in path[:-1]:
            owner = get_type_hints(owner)[part]
        name = path[-1]
        if name in table:
            raise TypeError(f"{cls.__name__}: field name {name!r} is used twice ({'.'.join(table[name][0])} and "
                            f"{'.'.join(path)}); the flat command line needs unique names")
        table[name] = (path, typ, f, owner)
    return table


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _coerce(name: str, typ: type, value: Any) -> Any:
    """``value`` as ``typ``; ints are accepted for floats, nothing else is converted silently."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is str and not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ConfigError(f"{name}: expected {typ.__name__}, got {value!r}")
    return value


def _build(cls: type[T], values: Mapping[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> T:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], values, path)
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def from_overrides(cls: type[T], overrides: Mapping[str, Any] | None = None, base: T | None = None) -> T:
    """``cls`` with its defaults (or ``base``'s values) replaced by ``overrides``.

    Keys are leaf field names (``"imgsz"``, as on the command line but with underscores) or
    dotted paths (``"detection.imgsz"``); an unknown key is refused with the valid names.
    """
    table = _leaf_table(cls)
    values: dict[tuple[str, ...], Any] = {}
    if base is not None:
        values.update({path: _get(base, path) for path, _, _, _ in table.values()})
    by_path = {".".join(path): name for name, (path, _, _, _) in table.items()}
    for key, value in (overrides or {}).items():
        name = by_path.get(key, key)
        if name not in table:
            raise ConfigError(f"{cls.__name__} has no setting {key!r}; valid: {', '.join(sorted(table))}")
        path, typ, _, _ = table[name]
        values[path] = _coerce(name, typ, value)
    return _build(cls, values)


def _get(cfg: Any, path: Sequence[str]) -> Any:
    for part in path:
        cfg = getattr(cfg, part)
    return cfg


def flat_dict(cfg: Any) -> dict[str, Any]:
    """``{leaf name: value}`` of a config, in field order (what checkpoints and summaries record)."""
    return {name: _get(cfg, path) for name, (path, _, _, _) in _leaf_table(type(cfg)).items()}


def build_parser(cls: type, *, prog: str, description: str = "", base: Any = None) -> argparse.ArgumentParser:
    """The ``argparse`` parser of dataclass ``cls`` (see the module docstring for the syntax).

    ``base``: an instance of ``cls`` whose values are the defaults (default: the field defaults),
    e.g. ``Args(method="attention")`` for a second command sharing one dataclass.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups: dict[type, Any] = {}
    for name, (path, typ, f, owner) in _leaf_table(cls).items():
        if owner is cls:
            target = parser
        else:
            if owner not in groups:
                parent = cls
                for part in path[:-2]:
                    parent = get_type_hints(parent)[part]
                # the docstring under the nested field, else the nested class's summary
                doc = field_docs(parent).get(path[-2]) or (inspect.getdoc(owner) or "").split("\n\n")[0]
                groups[owner] = parser.add_argument_group(owner.__name__, " ".join(doc.split()))
            target = groups[owner]
        flag = "--" + name.replace("_", "-")
        help_text = field_docs(owner).get(name, " ")
        default = _default(f) if base is None else _get(base, path)
        if typ is bool:
            target.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            target.add_argument(flag, dest=name, type=typ, default=default, metavar=typ.__name__.upper(), help=help_text)
    return parser


def parse(cls: type[T], argv: Sequence[str] | None = None, *, prog: str, description: str = "",
          base: T | None = None) -> T:
    """Command line -> ``cls``: every leaf field is ``--field-name``; booleans ``--x`` / ``--no-x``.

    ``base``: an instance of ``cls`` giving the defaults instead of the field defaults.
    """
    namespace = build_parser(cls, prog=prog, description=description, base=base).parse_args(argv)
    table = _leaf_table(cls)
    return _build(cls, {table[name][0]: value for name, value in vars(namespace).items()})


def to_argv(cfg: Any, *, only_changed: bool = True) -> list[str]:
    """The command-line arguments that rebuild ``cfg`` (only the non-default ones by default)."""
    argv: list[str] = []
    for name, (path, typ, f, _) in _leaf_table(type(cfg)).items():
        value = _get(cfg, path)
        if only_changed and value == _default(f):
            continue
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv
