"""`nudge demo --start`: the same seed and start replay the same history, so the flag must parse
to the instant given (UTC when no offset) and refuse anything else with the format to use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nudge.tools.cli import build_parser


def test_demo_start_defaults_to_now_and_parses_an_iso_instant() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo"]).start is None
    given = parser.parse_args(["demo", "--seed", "3", "--start", "2026-12-07T09:00:00Z"])
    assert given.start == datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert parser.parse_args(["demo", "--start", "2026-12-07T10:00:00+01:00"]).start == given.start
    # Without an offset, UTC
    assert parser.parse_args(["demo", "--start", "2026-12-07T09:00:00"]).start == given.start


def test_demo_start_that_is_not_a_time_is_refused_with_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["demo", "--start", "monday"])
    assert exited.value.code == 2
    assert "expected an ISO 8601 time like 2026-10-01T00:00:00Z, got 'monday'" in capsys.readouterr().err
