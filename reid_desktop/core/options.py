"""One declaration per setting, from which validation, TOML docs, command-line flags and forms are derived.

A setting is a dataclass field made with :func:`option`: its default, a one-line help, and what is
allowed (range, choices, a parser for text with its own syntax). The pipeline settings
(:mod:`reid_desktop.core.config`) and the training options (``trainer.config``) are both declared
this way, so the CLI flags, the TOML reference, the Settings dialog and the Trainer tab never restate
a range or a help line. Qt widgets are built from the same :class:`Option` in ``ui/option_form.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting's value or name is invalid; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class Option:
    """What a setting allows and how it is presented; ``None`` means no limit or no such presentation."""

    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], object] | None = None  # text with its own syntax: raises ValueError when wrong
    flag: str | None = None  # a command-line flag of its own (``--imgsz``); others are set with ``--set``
    label: str | None = None  # the form's label; default: the name in words
    unit: str = ""  # shown after a number in forms (" days")
    zero_means: str = ""  # what 0 means, shown by forms instead of "0" ("keep everything")
    step: float | None = None  # a form's spin-box step
    file_filter: str = ""  # a path: the file dialog's filter ("ONNX models (*.onnx)")
    suggestions: tuple[tuple[str, str], ...] = ()  # (label, value) offered by forms for free text
    placeholder: str = ""  # what an empty text means ("bundled YOLO11n-pose")
    aliases: tuple[str, ...] = ()  # other command-line names of the flag ("init" for --init)


def option(default: Any, help: str, **presentation: Any) -> Any:
    """A dataclass field carrying its :class:`Option` (typed ``Any`` so it can stand for any default)."""
    return field(default=default, metadata={"option": Option(help, **presentation)})


@dataclass(frozen=True)
class Setting:
    """One declared field of an options dataclass: its name, Python type, default and :class:`Option`."""

    name: str
    kind: type
    default: Any
    option: Option

    @property
    def label(self) -> str:
        return self.option.label or self.name.replace("_", " ").capitalize()


def settings_of(cls: type) -> Iterator[Setting]:
    """The declared settings of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # ``int | None``: the non-None type
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        yield Setting(f.name, kind, f.default, f.metadata["option"])


def setting(cls: type, name: str) -> Setting:
    return next(s for s in settings_of(cls) if s.name == name)


def coerce(key: str, s: Setting, value: Any) -> Any:
    """``value`` as the setting's type, checked against its range, choices and syntax (:class:`ConfigError`)."""
    o = s.option
    if s.kind is bool:
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            value = value.lower() in _TRUE
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif s.kind in (int, float):
        try:
            number = s.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a {s.kind.__name__}, got {value!r}") from None
        if isinstance(value, bool) or (s.kind is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected a {s.kind.__name__}, got {value!r}")
        if not math.isfinite(number):  # `inf` would mean "never" (commit_interval_s = inf never commits)
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        value = number
        if (o.min is not None and value < o.min) or (o.max is not None and value > o.max):
            rng = f"[{o.min if o.min is not None else '-inf'}, {o.max if o.max is not None else 'inf'}]"
            raise ConfigError(f"{key}: {value} is outside the allowed range {rng}")
    elif s.kind is str:
        value = str(value)
        if o.choices and value not in o.choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(o.choices)}")
        if o.parse:
            try:
                o.parse(value)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
    return value


def replace(obj: Any, values: dict[str, Any], where: str = "") -> Any:
    """A copy of options dataclass ``obj`` with ``values`` checked and applied; unknown names are refused."""
    known = {s.name: s for s in settings_of(type(obj))}
    changes = {}
    for name, value in values.items():
        if name not in known:
            raise unknown(f"setting in [{where}]" if where else "option", name, known)
        changes[name] = coerce(f"{where}.{name}" if where else name, known[name], value)
    return dataclasses.replace(obj, **changes)


def unknown(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint}")


def toml_literal(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')


def toml_lines(cls: type) -> list[str]:
    """Every setting of ``cls`` as ``# help`` and ``name = default`` lines."""
    lines = []
    for s in settings_of(cls):
        lines += [f"# {s.option.help}", f"{s.name} = {toml_literal(s.default)}"]
    return lines


def flag_name(s: Setting) -> str:
    return "--" + (s.option.flag or s.name).replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type, dest_prefix: str = "", *, only_flagged: bool = False,
              key_prefix: str | None = None, skip: Iterable[str] = ()) -> None:
    """One flag per setting (``--no-x`` for booleans), with its help; ``dest`` is ``dest_prefix + name``.

    With ``key_prefix`` the flags override a settings file: an absent flag is absent from the parsed
    arguments (not its default), and the help names the setting and its default.
    """
    skipped = set(skip)
    for s in settings_of(cls):
        if s.name in skipped or (only_flagged and not s.option.flag):
            continue
        help, default = s.option.help, s.default
        if key_prefix is not None:
            help = f"{help} (setting {key_prefix}{s.name}, default {toml_literal(s.default)})"
            default = argparse.SUPPRESS
        dest = dest_prefix + s.name
        names = (flag_name(s), *(f"--{alias}" for alias in s.option.aliases))
        if s.kind is bool:
            parser.add_argument(*names, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                help=help)
        else:
            parser.add_argument(*names, dest=dest, type=s.kind, default=default, choices=s.option.choices,
                                help=help, metavar=None if s.option.choices else (s.option.flag or s.name).upper())


def flag_values(args: argparse.Namespace, cls: type, dest_prefix: str = "") -> dict[str, Any]:
    """The settings of ``cls`` given on the command line (flags left ``None`` are absent)."""
    return {s.name: value for s in settings_of(cls)
            if (value := getattr(args, dest_prefix + s.name, None)) is not None}


def to_flags(obj: Any, skip: Iterable[str] = ()) -> list[str]:
    """The command line that :func:`add_flags` parses back into ``obj`` (to start a process with it)."""
    skipped = set(skip)
    flags: list[str] = []
    for s in settings_of(type(obj)):
        if s.name in skipped:
            continue
        value, flag = getattr(obj, s.name), flag_name(s)
        if s.kind is bool:
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags
