"""Each command-line option declared once, and everything that follows from the declaration.

An `Option` says its name (the flag `--NAME` and the variable `KPM_NAME` both follow from it),
its help, its default, its range, which commands take it and how its value is checked. The
parser, the environment reading, `RunConfig`'s defaults (config.py declares its fields with
`option(...)`), docs/cli.md and README's options table are all derived from it.

A value comes from the flag, else from the environment, else from the default (nox's order),
and the flag's text and the variable's text go through the same parsing and checks, so a bad
`KPM_REQUESTS` fails as `--requests` does, naming the variable.

A check that needs a module above the configuration (resolving `--plugin` needs the plugin
kinds, `--docker-host` the engines, `--expect` the JUnit report) is not declared here: the
command layer hands it in by the option's name (`values_of(..., checks=)`), and it is run and
named like the option's own, so this module and config.py import nothing above them.

In the environment a switch is one of `1 true yes on` or `0 false no off` (any case), a
repeatable option's values are separated by whitespace, and an empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from orchestration.errors import UsageError

ENV_PREFIX = "KPM_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# The commands that measure, and so take every option of a run.
RUN_COMMANDS = frozenset({"run", "matrix", "ui", "bisect", "pull", "selftest"})

Kind = Literal["int", "float", "text", "path", "switch", "list"]
Check = Callable[[Any], Any]  # a parsed value into the one the run uses, or a UsageError
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Bound:
    """An accepted numeric range for one option, used for flags and environment alike."""

    low: float
    high: float
    why: str = ""  # why the range is what it is, when that is not plain

    def check(self, value: N, flag: str) -> N:
        if not self.low <= value <= self.high:
            raise UsageError(
                f"{flag} must be between {number_text(self.low)} and {number_text(self.high)}, "
                f"got {number_text(value)}{self.why}"
            )
        return value


def number_text(number: float) -> str:
    """A number as a person writes it: 1000, not 1000.0; 0.1 as it is."""
    return str(int(number)) if float(number).is_integer() else str(number)


@dataclass(frozen=True)
class Option:
    """One option: the only place its flag, variable, help, default and checks are written."""

    name: str  # `ready_timeout`: flag --ready-timeout, variable KPM_READY_TIMEOUT
    help: str  # for --help; `{default}` is replaced by the default as a person writes it
    default: Any
    kind: Kind
    commands: frozenset[str] = RUN_COMMANDS
    bound: Bound | None = None
    metavar: str | None = None
    # Turns a parsed value into the one the run uses, or raises UsageError naming the flag.
    check: Check | None = None
    # README's options table, when it says more than --help; else the help.
    readme: str | None = None
    # The RunConfig field it fills (None: the command uses it itself, e.g. --junit).
    field: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def default_text(self) -> str:
        if self.kind == "switch":
            return "on" if self.default else "off"
        if self.kind in ("int", "float"):
            return number_text(self.default)
        if self.kind == "list":
            return " ".join(self.default)
        return str(self.default)

    def value(self, given: Any, environ: Mapping[str, str], handed_in: Check | None = None) -> Any:
        """The flag's value if given, else the variable's, else the default; parsed, checked.

        `handed_in` is the option's check from a layer above the configuration: it runs after
        the option's own, on the default too (the default `--plugin` is resolved as well)."""
        then: Check = handed_in or (lambda value: value)
        if given is not None:
            return then(self._checked(given))
        text = environ.get(self.variable, "").strip()
        if not text:
            return then(self.default)
        try:
            return then(self._checked(self._from_environment(text)))
        except UsageError as error:
            raise UsageError(f"{self.variable}={text!r}: {error}") from None

    def _from_environment(self, text: str) -> Any:
        """The variable's text in the shape the parser gives the flag's."""
        if self.kind == "list":
            return text.split()
        if self.kind != "switch":
            return text
        word = text.lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise UsageError(
                f"{self.flag} is a switch: write {', '.join(TRUE_WORDS)} to turn it on, or "
                f"{', '.join(FALSE_WORDS)} to turn it off"
            )
        return word in TRUE_WORDS

    def _checked(self, raw: Any) -> Any:
        value = raw
        if self.kind in ("int", "float"):
            value = self._number(raw)
        elif self.kind == "path":
            value = Path(raw)
        elif self.kind == "list":
            value = tuple(raw)
        return value if self.check is None else self.check(value)

    def _number(self, raw: str) -> int | float:
        kind = int if self.kind == "int" else float
        try:
            value = kind(raw)
        except ValueError:
            between = self.bound and (
                f" between {number_text(self.bound.low)} and {number_text(self.bound.high)}"
            )
            raise UsageError(f"{self.flag} takes a number{between or ''}, got {raw!r}") from None
        return value if self.bound is None else self.bound.check(value, self.flag)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """The flag on a command's parser: it keeps the text (None when absent), `value` parses."""
        text = self.help.replace("{default}", self.default_text) + f" [{self.variable}]"
        if self.kind == "switch":
            parser.add_argument(self.flag, action=argparse.BooleanOptionalAction, help=text)
        elif self.kind == "list":
            parser.add_argument(self.flag, action="append", metavar=self.metavar, help=text)
        else:
            parser.add_argument(self.flag, metavar=self.metavar, help=text)


def option(help: str, **declared: Any) -> dict[str, Any]:  # `help`: argparse's word
    """A RunConfig field's metadata that makes it an option (nox's idea): `field(default=...,
    metadata=option(help, bound=...))` takes Option's other fields as keywords. The name is the
    field's unless given; the kind follows the default's type unless given."""
    return {"option": {"help": help, **declared}}


def _kind_of(default: object) -> Kind:
    kinds: dict[type, Kind] = {bool: "switch", int: "int", float: "float", str: "text"}
    if isinstance(default, tuple):
        return "list"
    if isinstance(default, Path):
        return "path"
    return kinds[type(default)]


def options_of(config_class: type) -> tuple[Option, ...]:
    """The options a dataclass declares in its fields' metadata, each tied to its field."""
    found = []
    for each in fields(config_class):
        declared: dict[str, Any] | None = each.metadata.get("option")
        if declared is not None:
            found.append(
                Option(
                    **{
                        "name": each.name,
                        "kind": _kind_of(each.default),
                        **declared,
                        "default": each.default,
                        "field": each.name,
                    }
                )
            )
    return tuple(found)


def add_options(parser: argparse.ArgumentParser, command: str, declared: Iterable[Option]) -> None:
    for each in declared:
        if command in each.commands:
            each.add_to(parser)


def values_of(
    args: argparse.Namespace,
    command: str,
    declared: Iterable[Option],
    environ: Mapping[str, str] | None = None,
    checks: Mapping[str, Check] | None = None,
) -> dict[str, Any]:
    """Every option `command` takes, by name: flag over environment over default, checked (with
    `checks`, those handed in from above the configuration, by option name)."""
    env = os.environ if environ is None else environ
    handed_in = checks or {}
    return {
        each.name: each.value(getattr(args, each.name, None), env, handed_in.get(each.name))
        for each in declared
        if command in each.commands
    }
