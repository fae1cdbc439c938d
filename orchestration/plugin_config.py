"""`--plugin-config` against the plugin's dumped schema: Kong's schema types, required fields,
`between` and `one_of`, every problem named at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from orchestration.errors import ConfigError
from orchestration.plugin_dumps import PluginDump


def validate_plugin_config(config: Mapping[str, Any], dump: PluginDump) -> None:
    """Check a `--plugin-config` object against the plugin's dumped `config` record: unknown
    fields, types (string, number, integer, boolean, array, set, map, record), required fields,
    `between` and `one_of`. What the PDK does not dump cannot be checked. Every problem is
    named in one error, so one fix-and-retry is enough."""
    problems: list[str] = []
    _check_record(config, dump.schema, "config", dump.plugin_name, problems)
    if len(problems) == 1:
        raise ConfigError(f"--plugin-config: {problems[0]}")
    if problems:
        listed = "; ".join(f"({number}) {text}" for number, text in enumerate(problems, 1))
        raise ConfigError(
            f"--plugin-config has {len(problems)} problems for plugin {dump.plugin_name}: {listed}"
        )


def _check_record(
    value: object, schema: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    if not isinstance(value, Mapping):
        problems.append(_wrong(where, "a JSON object (record)", value, plugin))
        return
    fields: dict[str, Mapping[str, Any]] = {}
    for entry in schema.get("fields") or []:
        if isinstance(entry, Mapping):
            for name, field in entry.items():
                if isinstance(field, Mapping):
                    fields[str(name)] = field
    for name in value:
        if name not in fields:
            known = ", ".join(fields) or "none"
            problems.append(
                f"{where}.{name} is not a field of plugin {plugin} (its fields: {known})"
            )
    for name, field in fields.items():
        if name in value and value[name] is not None:
            _check_value(value[name], field, f"{where}.{name}", plugin, problems)
        elif field.get("required") is True and field.get("default") is None:
            problems.append(
                f"{where}.{name} is required by plugin {plugin} ({_describe(field)}) but was "
                "not given"
            )


def _is_integer(value: object) -> bool:
    # Kong's integer check is math.floor(v) == v: JSON's 3.0 is an integer too.
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )


# Kong schema scalar types: (the check, what to say was expected).
SCALAR_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "string": (lambda value: isinstance(value, str), "a string"),
    "boolean": (lambda value: isinstance(value, bool), "true or false"),
    "integer": (_is_integer, "an integer"),
    "number": (
        lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
        "a number",
    ),
}


def _check_value(
    value: object, field: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    """Appends what is wrong with `value` to `problems`; a value of the wrong type is one
    problem, not also each of its parts."""
    kind = str(field.get("type"))
    if kind in SCALAR_CHECKS:
        check, expected = SCALAR_CHECKS[kind]
        if not check(value):
            problems.append(_wrong(where, expected, value, plugin))
            return
    elif kind in ("array", "set"):
        if not isinstance(value, list):
            problems.append(_wrong(where, f"a JSON array ({kind})", value, plugin))
            return
        for index, item in enumerate(value):
            _check_nested(item, field.get("elements"), f"{where}[{index}]", plugin, problems)
    elif kind == "map":
        if not isinstance(value, Mapping):
            problems.append(_wrong(where, "a JSON object (map)", value, plugin))
            return
        for key, item in value.items():
            _check_nested(
                key, field.get("keys"), f"{where} key {json.dumps(key)}", plugin, problems
            )
            _check_nested(
                item, field.get("values"), f"{where}[{json.dumps(key)}]", plugin, problems
            )
    elif kind == "record":
        _check_record(value, field, where, plugin, problems)
    _check_bounds(value, field, where, plugin, problems)


def _check_nested(
    value: object, field: object, where: str, plugin: str, problems: list[str]
) -> None:
    """An element, key or value whose schema the dump gives (none given: nothing to check)."""
    if isinstance(field, Mapping):
        _check_value(value, field, where, plugin, problems)


def _check_bounds(
    value: object, field: Mapping[str, Any], where: str, plugin: str, problems: list[str]
) -> None:
    between = field.get("between")
    if (
        isinstance(between, list)
        and len(between) == 2
        and isinstance(value, (int, float))
        and not between[0] <= value <= between[1]
    ):
        problems.append(_wrong(where, f"between {between[0]} and {between[1]}", value, plugin))
    one_of = field.get("one_of")
    if isinstance(one_of, list) and value not in one_of:
        problems.append(_wrong(where, f"one of {json.dumps(one_of)}", value, plugin))


def _describe(field: Mapping[str, Any]) -> str:
    return f"a {field.get('type', 'value')}"


def _wrong(where: str, expected: str, given: object, plugin: str) -> str:
    return f"{where} of plugin {plugin} must be {expected}, got {json.dumps(given)}"
