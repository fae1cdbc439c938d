from __future__ import annotations

import pytest

from orchestration.config import new_run_id, parse_number, resolve
from orchestration.errors import UsageError


def test_flag_beats_environment_beats_default() -> None:
    env = {"KPM_REQUESTS": "200"}
    assert resolve("requests", "50", 1000, int, env) == 50
    assert resolve("requests", None, 1000, int, env) == 200
    assert resolve("requests", None, 1000, int, {}) == 1000


@pytest.mark.parametrize(
    ("option", "value"),
    [("requests", 0), ("requests", -5), ("users", 0), ("ready_timeout", 0.0), ("workers", 65)],
)
def test_out_of_range_names_the_option_and_range(option: str, value: float) -> None:
    with pytest.raises(UsageError) as raised:
        resolve(option, str(value), 1.0, float)
    assert "--" + option.replace("_", "-") in str(raised.value)
    assert "between" in str(raised.value)


def test_environment_is_checked_too() -> None:
    with pytest.raises(UsageError, match="--users"):
        resolve("users", None, 50, int, {"KPM_USERS": "abc"})


def test_not_a_number() -> None:
    with pytest.raises(UsageError, match="--requests takes a number between 1 and"):
        parse_number("requests", "abc", int)


def test_run_ids_are_unique_and_sortable() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i.split("-")) == 3 for i in ids)
