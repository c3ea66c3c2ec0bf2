"""`nudge journeys list | show ID`: a journey drawn as text, from the journey the engine runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nudge.tools.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    shutil.copy(ROOT / "tests" / "journeys" / "declining_rescue.yaml", target / "journeys")
    return target


def test_show_draws_each_step_with_the_edges_out_of_it(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journeys", "show", "declining_rescue", "--rules", str(rules_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  entry    on entering segment declining; re-entry after 30d; holdout 10%" in out
    assert "  goal     any meaningful use within 3w -> converted" in out
    answer = out.index("  [answer] wait until did survey_answered, at most 4d")
    assert out[answer + 1 : answer + 3] == ["      ├─ done ─> route", "      └─ timeout ─> high_value"]
    assert "      ├─ last blocker of survey_answered = too_complex ─> walkthrough" in out
    assert out[-1] == "      └──> end"


def test_show_names_the_known_journeys_for_an_unknown_id(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journeys", "show", "declining_rescu", "--rules", str(rules_dir)]) == 1
    assert "(journeys: declining_rescue, onboarding, upgrade)" in capsys.readouterr().err


def test_list_names_every_journey(rules_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journeys", "list", "--rules", str(rules_dir)]) == 0
    assert capsys.readouterr().out.split()[:2] == ["declining_rescue", "rescue"]
