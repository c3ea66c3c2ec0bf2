"""The demo's users in the product's pages: they see their in-app messages and answer the surveys.

Nudge puts in-app messages (the rescue's one-question survey, the onboarding's) in the user's inbox;
the product's page shows them with /v1/nudge.js. The demo does over HTTP what that page does when a
sample user visits (nudge.tools.samples.surveys says who visits, when, and what they answer):

    GET  /v1/inbox                        with a client key and the user's inbox token
    POST /v1/inbox/{id}      {"action": "seen"}
    POST /v1/inbox/{id}/answer  {"answer": <a choice the survey shows>}   (a plain message: "clicked")

The inbox token is the one the product's server signs for its signed-in user (nudge.domain.inbox).
The answer lands, through the real route, as the event `survey_answered`, and the journey waiting
for it takes its branch. A visit is made at the end of the half day it falls in (the replay's clock
step), stamped by the API with the simulated now.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nudge.domain.inbox import inbox_token
from nudge.model.ledger import LedgerEntry
from nudge.tools.samples.surveys import Visit, choose, visit

TOKEN_LIFETIME = timedelta(minutes=30)


@dataclass
class InboxTally:
    """What the visits did: each visit's outcome (seen, answered, clicked, gone, failed) and the
    survey answers given (property=choice)."""

    planned: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)


class InboxVisitor:
    """The product's page for each visiting user, over the local API."""

    def __init__(self, host: str, port: int, client_key: str, user_token_secret: str) -> None:
        self._host, self._port = host, port
        self._key = client_key
        self._secret = user_token_secret.encode()
        self.pending: list[Visit] = []
        self.tally = InboxTally()

    def plan(self, entry: LedgerEntry) -> None:
        """A sent in-app message: the user may come and see it (and answer) later."""
        d = entry.decision
        if d.channel != "in_app" or entry.status != "sent":
            return
        planned = visit(d.decision_id, d.user, entry.updated_at)
        if planned is not None:
            self.pending.append(planned)
            self.tally.planned += 1

    def visit_due(self, until: datetime, now: datetime) -> int:
        """Make the visits planned before `until`, at `now` (the simulated clock). Returns how many."""
        due = [v for v in self.pending if v.at < until]
        self.pending = [v for v in self.pending if v.at >= until]
        for planned in due:
            self.tally.outcomes[self._visit(planned, now)] += 1
        return len(due)

    def _visit(self, planned: Visit, now: datetime) -> str:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        token = inbox_token(self._secret, planned.user_id, now + TOKEN_LIFETIME)
        headers = {
            "Authorization": f"Bearer {self._key}",
            "X-Nudge-User-Token": token,
            "Content-Type": "application/json",
            "User-Agent": "nudge-demo-page/1",
        }
        try:
            status, body = _call(conn, "GET", "/v1/inbox", None, headers)
            if status != 200:
                return "failed"
            shown = [m for m in body.get("messages", []) if m.get("message_id") == planned.message_id]
            if not shown:
                return "gone"  # expired, or erased, before the user came back
            message = shown[0]
            path = f"/v1/inbox/{planned.message_id}"
            status, _ = _call(conn, "POST", path, {"action": "seen"}, headers)
            if status != 200:
                return "failed"
            if not planned.act:
                return "seen"
            survey = message.get("survey")
            if survey:
                choice = choose(planned.message_id, list(survey.get("choices") or ["other"]))
                status, _ = _call(conn, "POST", f"{path}/answer", {"answer": choice}, headers)
                self.tally.answers[f"{survey.get('property')}={choice}"] += int(status == 200)
                return "answered" if status == 200 else "failed"
            status, _ = _call(conn, "POST", path, {"action": "clicked"}, headers)
            return "clicked" if status == 200 else "failed"
        except (OSError, http.client.HTTPException):
            return "failed"
        finally:
            conn.close()


def _call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else {}
