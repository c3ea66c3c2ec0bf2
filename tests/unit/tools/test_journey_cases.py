"""Rule tests for journeys (`nudge rules test`): a case given events over time expects the journey's
path, messages and end, and says in file:line terms each way it does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nudge.tools.cli import main

ROOT = Path(__file__).resolve().parents[3]

SETUP_DONE_AT_ONCE = """\
cases:
  - name: set up at once
    given:
      - {event: signed_up, at: -6d}
      - {event: setup_completed, at: -6d}
    expect:
      journey: onboarding
%s
"""


@pytest.fixture
def rules_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    monkeypatch.chdir(tmp_path)
    return target


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["rules", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out


def write_case(rules: Path, expect: str) -> None:
    (rules / "tests" / "extra.yaml").write_text(SETUP_DONE_AT_ONCE % expect, encoding="utf-8")


def test_the_shipped_journeys_have_passing_cases(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "test", "rules", "-k", "rescue")
    assert code == 0
    assert "PASS rules/tests/journeys.yaml:" in out
    code, out = run(capsys, "lint", "rules")
    assert code == 0
    assert ", 3 journeys, " in out


def test_a_journey_case_follows_the_users_progress_over_time(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a user who set up at once and made no project: the journey skips the setup email
    write_case(
        rules_copy,
        "      path: [setup, project, first_project, project_again]\n"
        "      sends: [{template: first_project, channel: email, step: first_project}]",
    )
    code, out = run(capsys, "test", "rules", "-k", "set up at once")
    assert code == 0, out
    assert "PASS rules/tests/extra.yaml:2: set up at once" in out


def test_a_wrong_path_or_message_fails_with_file_line_and_what_happened(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(
        rules_copy,
        "      path: [setup, finish_setup]\n      sends: [{template: finish_setup}]\n      ended: converted",
    )
    code, out = run(capsys, "test", "rules", "-k", "set up at once")
    assert code == 1
    assert "FAIL rules/tests/extra.yaml:2: set up at once" in out
    assert "path: expected setup > finish_setup, got setup > project > first_project > project_again" in out
    assert "sends[0]: expected finish_setup, got first_project by email at first_project" in out
    assert "ended: expected converted, got still running" in out


def test_a_step_or_journey_the_rules_do_not_have_is_refused_at_its_line(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_case(rules_copy, "      path: [setup, frist_project]")
    code, out = run(capsys, "lint", "rules")
    assert code == 1
    assert "rules/tests/extra.yaml:8: journey 'onboarding' has no step 'frist_project'" in out
    assert "did you mean 'first_project'?" in out
    (rules_copy / "tests" / "extra.yaml").write_text(
        (SETUP_DONE_AT_ONCE % "      ended: converted").replace("journey: onboarding", "journey: onboardin"),
        encoding="utf-8",
    )
    code, out = run(capsys, "lint", "rules")
    assert code == 1
    assert "rules/tests/extra.yaml:7: unknown journey 'onboardin' — did you mean 'onboarding'?" in out


def test_a_path_without_its_journey_is_refused(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rules_copy / "tests" / "extra.yaml").write_text(
        "cases:\n  - name: no journey\n    expect: {path: [setup]}\n", encoding="utf-8"
    )
    code, out = run(capsys, "lint", "rules")
    assert code == 1
    assert "name it, e.g. journey: declining_rescue" in out


TAGGER = """\
id: tagger
kind: onboarding
entry: {event: {name: signed_up}}
steps:
  - id: tag
    update: {trait: plan, value: team}
  - id: pause
    wait: 1h
  - id: check
    branch:
      - when: {trait: {name: plan, equals: team}}
        step: mail
      - else: end
  - id: mail
    send: {channel: email, template: first_project}
"""


def test_a_trait_an_update_step_sets_is_seen_by_the_steps_after_it(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_copy / "journeys" / "tagger.yaml").write_text(TAGGER, encoding="utf-8")
    (rules_copy / "tests" / "extra.yaml").write_text(
        "cases:\n  - name: tagged\n    given: [{event: signed_up, at: -1d}]\n"
        "    expect: {journey: tagger, path: [tag, pause, check, mail], sends: [{template: first_project}]}\n",
        encoding="utf-8",
    )
    code, out = run(capsys, "test", "rules", "-k", "tagged")
    assert code == 0, out
