"""Settings from the environment (nudge.settings): NUDGE_<FIELD> in any case, a keyword argument over
it, each value validated as its field says; without pydantic-settings (BENCHMARKS.md section 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nudge.settings import Settings


def test_each_field_comes_from_its_variable_converted_to_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_USAGE_TABLE", "usage-from-env")
    monkeypatch.setenv("NUDGE_ROLLUP_SHARDS", "32")
    monkeypatch.setenv("NUDGE_SMS_ENABLED", "false")
    monkeypatch.setenv("NUDGE_RULES_DIR", "/opt/rules")
    monkeypatch.setenv("NUDGE_SWEEP_MARGIN_SECONDS", "2.5")
    settings = Settings()
    assert (settings.usage_table, settings.rollup_shards, settings.sms_enabled) == (
        "usage-from-env",
        32,
        False,
    )
    assert (settings.rules_dir, settings.sweep_margin_seconds) == (Path("/opt/rules"), 2.5)


def test_a_keyword_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_LEDGER_TABLE", "ledger-from-env")
    assert Settings(ledger_table="ledger-given").ledger_table == "ledger-given"


def test_a_variable_in_another_case_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("nudge_cs_topic_arn", "arn:aws:sns:us-east-1:123456789012:cs")
    assert Settings().cs_topic_arn == "arn:aws:sns:us-east-1:123456789012:cs"


def test_an_unset_variable_keeps_the_default_and_unknown_ones_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NUDGE_DUE_SHARDS", raising=False)
    monkeypatch.setenv("NUDGE_NOT_A_SETTING", "x")
    assert Settings().due_shards == 16


def test_a_bad_value_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_KEYS_MAX_AGE_SECONDS", "600")
    with pytest.raises(ValidationError, match="keys_max_age_seconds"):
        Settings()
    monkeypatch.setenv("NUDGE_KEYS_MAX_AGE_SECONDS", "soon")
    with pytest.raises(ValidationError, match="keys_max_age_seconds"):
        Settings()
