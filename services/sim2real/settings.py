"""One settings object per verb: a dataclass whose fields carry their CLI flag in ``metadata``.

A verb's settings are written once, as a frozen dataclass of :func:`option` fields; its
argparse flags (:func:`add_arguments`), the settings read back from parsed flags
(:func:`from_namespace`) and their JSON form (:func:`to_dict` and back :func:`from_dict`, for
results, job messages and compose variables) are all derived from it, so they cannot drift apart.

    @dataclass(frozen=True)
    class Settings:
        bags: tuple[str, ...] = option((), "recordings", positional=True)
        lag_s: float = option(0.3, "reaction lag in seconds", flag="--lag")
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, field, fields
from typing import Any


def option(default: Any, help: str, *, flag: str | None = None, positional: bool = False,
           metavar: str | None = None, choices: tuple | None = None, required: bool = False) -> Any:
    """A settings field with its command-line flag.

    The flag is ``--field-name`` unless ``flag`` names it; ``positional`` makes it an argument
    (a tuple default: one or more). A tuple default makes a flag that may be repeated; a bool
    default False a switch, True a ``--x/--no-x`` pair. ``required`` only marks the flag required.
    """
    metadata = {"help": help, "flag": flag, "positional": positional, "metavar": metavar, "choices": choices,
                "required": required}
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _type_of(f) -> type:
    annotation = str(f.type)
    if annotation.startswith("tuple"):
        annotation = annotation[len("tuple["):].split(",")[0]
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def flag_name(f) -> str:
    """The command-line flag of a settings field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of the settings dataclass ``cls``."""
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        default = f.default if f.default is not MISSING else None
        kind = _type_of(f)
        shown = "" if default in (None, (), False, "") or isinstance(default, bool) else " (default %(default)s)"
        kwargs: dict[str, Any] = {"help": meta["help"] + shown}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="+" if isinstance(default, tuple) else None, type=kind, **kwargs)
            continue
        if kind is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag_name(f), dest=f.name, action=action, default=default, help=kwargs["help"])
            continue
        if isinstance(default, tuple):
            parser.add_argument(flag_name(f), dest=f.name, action="append", type=kind, default=None,
                                required=meta.get("required", False), **kwargs)
            continue
        parser.add_argument(flag_name(f), dest=f.name, type=kind, default=default,
                            required=meta.get("required", False), **kwargs)


def from_namespace(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The settings ``cls`` from parsed arguments (fields without a flag from ``extra`` or their default)."""
    values = {}
    for f in fields(cls):
        if f.name in extra:
            values[f.name] = extra[f.name]
        elif hasattr(args, f.name) and "help" in f.metadata:
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else (f.default if value is None
                                                                            and isinstance(f.default, tuple)
                                                                            else value)
    return cls(**values)


def to_dict(settings: Any) -> dict:
    """The settings as JSON-ready values (tuples become lists)."""
    return {f.name: list(v) if isinstance(v := getattr(settings, f.name), tuple) else v for f in fields(settings)}


def from_dict(cls: type, data: dict) -> Any:
    """The settings ``cls`` from their JSON form; an unknown key is an error that names it."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}")
    return cls(**{k: tuple(v) if isinstance(known[k].default, tuple) and isinstance(v, list) else v
                  for k, v in data.items()})
