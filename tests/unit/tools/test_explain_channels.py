"""`nudge rules explain` shows which of a firing rule's channels the user would get, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.tools.cli import main
from tests.shipped import ONE_SHOT_DIR

ROOT = Path(__file__).resolve().parents[3]
END = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def history(path: Path, user: str, traits: dict[str, Any]) -> Path:
    """Activated 60 days before END, a project a day for 40 days, then a report a week: declining."""
    start = END - 60 * DAY
    lines: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": user,
            "traits": traits,
            "timestamp": start.isoformat(),
            "messageId": "i",
        }
    ]
    events = [("signed_up", start), ("setup_completed", start), ("teammate_invited", start + DAY)]
    events += [("project_created", start + (1 + i) * DAY) for i in range(40)]
    events += [("report_exported", END - 12 * DAY), ("report_exported", END - 5 * DAY)]
    lines += [
        {"type": "track", "userId": user, "event": e, "timestamp": at.isoformat(), "messageId": f"m{n}"}
        for n, (e, at) in enumerate(events)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_explain_shows_the_rescue_going_by_email_to_a_user_without_a_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)  # the one-shot rescue trigger
    events = history(tmp_path / "h.ndjson", "dee", {"email": "dee@example.com", "timezone": "UTC"})
    argv = ["rules", "explain", "dee", "--events", str(events), "--at", END.isoformat()]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rescue_declining (rescue, push > email, template declining_nudge): FIRES" in out
    assert "    channel: email (push: no_address; email: chosen)" in out
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rescue = next(t for t in data["triggers"] if t["id"] == "rescue_declining")
    assert rescue["channels"] == ["push", "email"]
    assert rescue["channel"] == {"channel": "email", "blocked": "", "why": "push: no_address; email: chosen"}
