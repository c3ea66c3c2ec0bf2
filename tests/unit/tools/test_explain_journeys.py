"""`nudge rules explain USER --events FILE`, journeys: where the user is in each journey (step, since
when, variant), why (the wait's event, the branch's and goal's conditions), and what is next and when;
an ended instance with its reason and path. The instances come from replaying the history through
the services production runs (the backtest's replay)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.tools.cli import main
from tests.shipped import ONE_SHOT_DIR

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
WELCOME = """
id: welcome
kind: onboarding
entry: {event: {name: signed_up}}
goal: {event: project_created, within: 7d}
steps:
  - id: hello
    send: {channel: email, template: first_project}
  - id: setup
    wait_until: {event: setup_completed, timeout: 3d, then: route, on_timeout: nudge}
  - id: nudge
    send: {channel: email, template: finish_setup}
    next: end
  - id: route
    branch:
      - when: {trait: {name: plan, equals: team}}
        step: nudge
      - else: end
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, target)  # the one-shot rules: no shipped journey beside these
    (target / "journeys" / "welcome.yaml").write_text(WELCOME, encoding="utf-8")
    return target


def history(path: Path) -> Path:
    """ann signs up and does nothing more; bob signs up and creates a project the next day."""
    lines: list[dict[str, Any]] = []
    for n, user in enumerate(("ann", "bob")):
        at = START.isoformat()
        lines.append(
            {
                "type": "identify",
                "userId": user,
                "traits": {"email": f"{user}@example.com"},
                "timestamp": at,
                "messageId": f"i{n}",
            }
        )
        lines.append(
            {"type": "track", "userId": user, "event": "signed_up", "timestamp": at, "messageId": f"s{n}"}
        )
    lines.append(
        {
            "type": "track",
            "userId": "bob",
            "event": "project_created",
            "timestamp": (START + DAY).isoformat(),
            "messageId": "p",
        }
    )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_explain_says_where_the_user_is_in_a_journey_why_and_what_is_next(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = history(tmp_path / "h.ndjson")
    at = (START + DAY + timedelta(hours=1)).isoformat()
    argv = ["rules", "explain", "ann", "--events", str(events), "--rules", str(rules_dir), "--at", at]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("Journeys:")
    journey = out[start + 1 :]
    entered = "2026-03-02T23:59:59Z"  # evaluated at the end of the sign-up day
    assert journey[0] == "  welcome (onboarding, entry on signed_up):"
    assert journey[1] == f"    at step setup since {entered} (entered {entered})"
    assert journey[2] == "      wait until did setup_completed, at most 3d"
    assert journey[3].startswith(f"      ✗ did setup_completed since {entered}")
    assert journey[4] == (
        "    next: 2026-03-05T23:59:59Z: on to route as soon as it happens, else to nudge at the timeout"
    )
    assert journey[5] == "    goal (ends it as converted, until 2026-03-09T23:59:59Z):"
    assert journey[6].startswith("      ✗ did project_created since entering")
    # bob converted the next day: ended, with the reason and the path taken
    assert main([*argv[:2], "bob", *argv[3:]]) == 0
    out = capsys.readouterr().out
    assert (
        "    ended 2026-03-03T23:59:59Z: converted (entered 2026-03-02T23:59:59Z, path hello > setup)" in out
    )
    # and as JSON
    assert main([*argv, "--json"]) == 0
    (welcome,) = json.loads(capsys.readouterr().out)["journeys"]
    (instance,) = welcome["instances"]
    assert (instance["step"], instance["next_at"]) == ("setup", "2026-03-05T23:59:59Z")
