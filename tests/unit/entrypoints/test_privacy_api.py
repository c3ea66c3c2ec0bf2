"""Unsubscribe links, erasure and export: the use cases on in-memory fakes, then the API's routes (the real
resolver, with its collaborators replaced by the same fakes)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from nudge import clock
from nudge.adapters.memory import (
    MemoryAccountLedger,
    MemoryLedger,
    MemorySegmentStore,
    MemorySuppressionStore,
    MemoryUsageStore,
)
from nudge.adapters.memory.rate_limits import FakeRateCounter
from nudge.bootstrap import api as wiring
from nudge.domain.keys import KeyKind, new_record
from nudge.domain.suppression import address_key
from nudge.domain.tokens import TokenInvalid, make_token
from nudge.entrypoints.http import ingest_api, privacy_api
from nudge.model.decisions import Decision
from nudge.model.ledger import Commit, Escalation, LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.plan import load_plan
from nudge.services.auth import ApiKeys
from nudge.services.erasure import ERASED, erase_user
from nudge.services.export import export_user
from nudge.services.suppression import SecretsUnavailable, SuppressionList
from nudge.services.unsubscribe import unsubscribe
from nudge.settings import Settings
from tests.shipped import ONE_SHOT_DIR

REPO = Path(__file__).resolve().parents[3]
NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
SECRET = b"s" * 32
OLD_SECRET = b"o" * 32
KEYING = b"k" * 32  # the suppression list's
KEY = "ak-unit"  # an admin key: erasure and export need one
SERVER_KEY = "sk-unit"
CLIENT_KEY = "ck-unit"


def live_keys() -> dict[str, str]:
    kinds = {"admin-1": (KeyKind.ADMIN, KEY), "server-1": (KeyKind.SERVER, SERVER_KEY)}
    kinds["client-1"] = (KeyKind.CLIENT, CLIENT_KEY)
    return {
        key_id: new_record(key_id, kind, key, created_at=NOW, origins=["*"]).to_json()
        if kind is KeyKind.CLIENT
        else new_record(key_id, kind, key, created_at=NOW).to_json()
        for key_id, (kind, key) in kinds.items()
    }


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def decision(
    decision_id: str, user: str, account: str | None = "acct-1", *, escalate: bool = False
) -> Decision:
    return Decision(
        decision_id=decision_id,
        user=user,
        account=account,
        rule="rescue_account" if escalate else "finish_setup",
        kind="escalation" if escalate else "onboarding",
        action="escalate" if escalate else "email",
        channel="cs" if escalate else "email",
        template="t",
        priority=1,
        reason="test",
        facts={"days_inactive": 12},
        decided_at=NOW,
    )


def entry(d: Decision) -> LedgerEntry:
    return LedgerEntry(decision=d, outcome="send", status="queued", recorded_at=NOW, updated_at=NOW)


def state(user_id: str, account: str | None = "acct-1") -> UserState:
    member = Stamped(v=account, at=NOW, mid="m1") if account else None
    traits = {"email": Stamped(v=f"{user_id}@acme.example", at=NOW, mid="m1")}
    return UserState(user_id=user_id, first_seen=NOW, account=member, traits=traits)


@dataclass
class World:
    usage: MemoryUsageStore
    segments: MemorySegmentStore
    ledger: MemoryLedger
    accounts: MemoryAccountLedger

    def erase(self, user_id: str) -> Any:
        return erase_user(
            user_id, usage=self.usage, segments=self.segments, ledger=self.ledger, accounts=self.accounts
        )

    def add_user(self, user_id: str, account: str | None = "acct-1") -> None:
        self.usage.save_user(state(user_id, account), 0, None, NOW)
        self.segments.save(user_id, SegmentRecord(next_check_at=NOW + timedelta(days=1)), 0, NOW)
        self.ledger.commit(
            Commit(user_id, None, 0, (entry(decision(f"d-{user_id}", user_id, account)),), frozenset()), NOW
        )
        self.ledger.unsubscribe(user_id, "sms", NOW)

    def escalate(self, d: Decision, *, handled: bool = False) -> None:
        assert d.account is not None
        escalation = Escalation(decision_id=d.decision_id, rule=d.rule, user=d.user, opened_at=NOW)
        version = self.ledger.escalations[d.account].version if d.account in self.ledger.escalations else 0
        self.ledger.commit(
            Commit(d.user, None, 0, (entry(d),), frozenset(), (d.account, escalation, version)), NOW
        )
        if handled:
            assert self.ledger.handle_escalation(d.account, "agent", NOW)


def world() -> World:
    ledger = MemoryLedger()
    return World(MemoryUsageStore(), MemorySegmentStore(), ledger, MemoryAccountLedger(ledger))


# ------------------------------------------------------------------------------ erasure use case


def test_erasure_deletes_the_users_usage_and_ledger_items_and_nobody_elses() -> None:
    # Given two users of one account, each with state, segment record, ledger entry and unsubscribe
    w = world()
    gone, kept = uid(), uid()
    w.add_user(gone)
    w.add_user(kept)

    # When the first is erased
    erased = w.erase(gone)

    # Then everything of theirs is gone (state + segment record; entry + delivery record) ...
    assert (erased.usage, erased.ledger, erased.anonymized) == (2, 2, 0)
    assert gone not in w.usage.users
    assert gone not in w.segments.records
    assert w.ledger.entries_of(gone) == []
    assert gone not in w.ledger.unsubscribed
    # ... and the other user's stay whole
    assert kept in w.usage.users
    assert kept in w.segments.records
    assert len(w.ledger.entries_of(kept)) == 1
    assert w.ledger.unsubscribed[kept] == {"sms"}


def test_erasing_twice_or_erasing_a_stranger_deletes_nothing_more() -> None:
    w = world()
    user = uid()
    w.add_user(user)
    w.erase(user)

    assert w.erase(user) == w.erase(uid())
    assert (w.erase(user).usage, w.erase(user).ledger, w.erase(user).anonymized) == (0, 0, 0)


def test_the_open_escalation_they_raised_is_kept_with_the_user_replaced() -> None:
    # Given an account escalation raised by the user, open, and an older one of theirs handled
    w = world()
    user, other = uid(), uid()
    w.add_user(user)
    w.add_user(other)
    w.escalate(decision("esc-old", user, escalate=True), handled=True)
    w.escalate(decision("esc-other", other, escalate=True), handled=True)
    w.escalate(decision("esc-open", user, escalate=True))

    # When the user is erased
    erased = w.erase(user)

    # Then the open escalation's decision stays, naming nobody; the handled one of theirs goes
    assert erased.anonymized == 2  # the decision and the escalation record
    assert erased.ledger == 3  # their entry, their delivery record, the handled escalation decision
    kept = w.ledger.get("ACCOUNT#acct-1", "esc-open")
    assert kept is not None
    assert kept.decision.user == ERASED
    assert kept.status == "queued"  # the escalate function can still deliver the case
    assert w.ledger.get("ACCOUNT#acct-1", "esc-old") is None
    escalation = w.accounts.escalation("acct-1")
    assert escalation is not None
    assert (escalation.decision_id, escalation.user) == ("esc-open", ERASED)
    # and another user's escalation decision is not touched
    other_decision = w.ledger.get("ACCOUNT#acct-1", "esc-other")
    assert other_decision is not None
    assert other_decision.decision.user == other


def test_escalations_are_found_through_ledger_entries_when_the_state_is_gone() -> None:
    # Given a user whose usage state is already gone (an erasure that failed half-way)
    w = world()
    user = uid()
    w.add_user(user, account="acct-2")
    w.escalate(decision("esc-2", user, account="acct-2", escalate=True), handled=True)
    w.usage.users.pop(user)

    # When erased again, the account is known from their own ledger entry
    w.erase(user)

    assert w.ledger.get("ACCOUNT#acct-2", "esc-2") is None


# ------------------------------------------------------------------------- unsubscribe use case


def suppression_list() -> SuppressionList:
    return SuppressionList(MemorySuppressionStore(), lambda: [KEYING])


def unsubscribe_with(token: str, *, whole_channel: bool = False, **ports: Any) -> Any:
    """`unsubscribe` with SECRET and fresh fakes for whatever `ports` does not give."""
    return unsubscribe(
        token,
        whole_channel=whole_channel,
        secrets=ports.pop("secrets", lambda: [SECRET]),
        ledger=ports.pop("ledger", MemoryLedger()),
        usage=ports.pop("usage", MemoryUsageStore()),
        suppressions=ports.pop("suppressions", None),
        now=ports.pop("now", NOW),
    )


def test_a_token_unsubscribes_from_its_topic_or_its_whole_channel() -> None:
    ledger = MemoryLedger()
    user = uid()
    token = make_token(SECRET, user, "email:onboarding", NOW)

    assert unsubscribe_with(token, ledger=ledger).scope == "email:onboarding"
    assert unsubscribe_with(token, whole_channel=True, ledger=ledger).scope == "email"
    assert ledger.unsubscribed[user] == {"email:onboarding", "email"}


def test_a_genuine_token_years_old_still_unsubscribes() -> None:
    # Given a link from a message sent years ago, signed with a secret still listed
    ledger = MemoryLedger()
    user = uid()
    old = make_token(SECRET, user, "email:onboarding", NOW - timedelta(days=3 * 365))

    # When it is used, Then the user is unsubscribed (only a tampered or malformed token is refused)
    assert unsubscribe_with(old, ledger=ledger).scope == "email:onboarding"
    assert ledger.unsubscribed[user] == {"email:onboarding"}


def test_the_address_the_token_names_goes_on_the_suppression_list_in_its_scope() -> None:
    # Given a link naming the key of the address its message went to
    suppressions = suppression_list()
    key = address_key([KEYING], "email", "ada@acme.example")
    token = make_token(SECRET, uid(), "email:onboarding", NOW, key)

    # When it is used (twice: a click, then the mail client's one-click POST)
    unsubscribe_with(token, suppressions=suppressions)
    unsubscribe_with(token, suppressions=suppressions, now=NOW + timedelta(hours=1))

    # Then the address's key is recorded once, with the scope, the reason and the first time
    [record] = suppressions.store.find([key or ""])
    assert (record.scope, record.reason, record.at) == ("email:onboarding", "unsubscribe", NOW)


def test_a_token_without_an_address_key_suppresses_the_users_current_address() -> None:
    # Given a link made before tokens carried the address, for a user whose email is known
    suppressions = suppression_list()
    w = world()
    user = uid()
    w.add_user(user)
    token = make_token(SECRET, user, "email:onboarding", NOW)

    # When it is used for the whole channel
    unsubscribe_with(token, whole_channel=True, usage=w.usage, suppressions=suppressions)

    # Then the user's current address is suppressed from all email
    found = suppressions.of_address("email", f"{user}@acme.example")
    assert [(r.scope, r.reason) for r in found] == [("email", "unsubscribe")]


def test_a_token_signed_with_a_rotated_out_secret_still_works_while_listed() -> None:
    ledger = MemoryLedger()
    token = make_token(OLD_SECRET, "u1", "email:tips", NOW)

    done = unsubscribe_with(token, secrets=lambda: [SECRET, OLD_SECRET], ledger=ledger)

    assert done.scope == "email:tips"


@pytest.mark.parametrize(
    "token",
    [
        make_token(SECRET, "u1", "email:tips", NOW)[:-2] + "AA",
        make_token(b"x" * 32, "u1", "email:tips", NOW),
        "not-a-token",
    ],
)
def test_a_tampered_or_malformed_token_unsubscribes_nobody(token: str) -> None:
    ledger = MemoryLedger()
    store = MemorySuppressionStore()

    with pytest.raises(TokenInvalid):
        unsubscribe_with(token, ledger=ledger, suppressions=SuppressionList(store, lambda: [KEYING]))

    assert ledger.unsubscribed == {}
    assert store.records == {}


def test_a_missing_or_short_secret_is_a_server_problem_not_a_bad_link() -> None:
    token = make_token(SECRET, "u1", "email:tips", NOW)
    for secrets in ([], [b"short"]):
        with pytest.raises(SecretsUnavailable):
            unsubscribe_with(token, secrets=lambda s=secrets: s)


# ------------------------------------------------------------------------------------- the API


class Context:
    function_name = "ingest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "req-unit"


@dataclass
class Api:
    world: World
    secrets: list[bytes]
    suppressions: MemorySuppressionStore

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        *,
        key: str | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": f"{method} {path}",
            "rawPath": path,
            "rawQueryString": urlencode(query or {}),
            "headers": all_headers,
            "requestContext": {
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
                "requestId": "r",
                "stage": "$default",
            },
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
        if body is not None:
            event["body"] = body
        response = ingest_api.resolve(event, Context())  # type: ignore[arg-type]
        return response["statusCode"], response.get("headers") or {}, response.get("body") or ""


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]) -> Api:
    w = world()
    secrets = [SECRET]
    store = MemorySuppressionStore()

    def fetch_secrets() -> tuple[bytes, ...]:
        if not secrets:
            raise TimeoutError("ssm")
        return tuple(secrets)

    svc = wiring.Services(
        settings=Settings(),
        plan=load_plan(ONE_SHOT_DIR),
        store=w.usage,
        keys=ApiKeys(live_keys),
        limits=wiring.limits_from(Settings()),
        rate_counter=FakeRateCounter(),
        user_token_secrets=lambda: (SECRET,),
        segments=w.segments,
        ledger=w.ledger,
        accounts=w.accounts,
        unsubscribe_secrets=fetch_secrets,
        suppressions=SuppressionList(store, lambda: [KEYING]),
    )
    monkeypatch.setattr(ingest_api, "services", lambda: svc)
    monkeypatch.setattr(privacy_api, "services", lambda: svc)
    use_clock(lambda: NOW)
    return Api(w, secrets, store)


def token(user: str, scope: str = "email:onboarding", at: datetime = NOW) -> str:
    return make_token(SECRET, user, scope, at)


FORM_POST = {"content-type": "application/x-www-form-urlencoded", "accept": "text/html,*/*;q=0.8"}


def test_the_links_get_asks_to_confirm_and_unsubscribes_nobody(api: Api) -> None:
    # Given a link from a message (mail scanners and link previews open links nobody clicked)
    user = uid()
    key = address_key([KEYING], "email", f"{user}@acme.example")

    # When it is opened, with no write key
    status, headers, page = api.call(
        "GET", "/v1/unsubscribe", {"token": make_token(SECRET, user, "email:onboarding", NOW, key)}
    )

    # Then a page asks to confirm, with a button POSTing the link back, and nothing is recorded
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "Unsubscribe from onboarding emails?" in page
    assert 'method="post"' in page
    assert ">Unsubscribe</button>" in page
    assert api.world.ledger.unsubscribed == {}
    assert api.suppressions.records == {}
    # A way to leave all email too: a second form POSTing back with all=1, relative to the page
    assert "all=1" in page
    assert "Unsubscribe from all emails" in page
    assert "<script" not in page
    assert "http" not in page.split("<body>")[1]  # no external asset or link
    assert headers["Cache-Control"] == "no-store"


def test_the_confirm_pages_button_unsubscribes_the_user_and_the_address(api: Api) -> None:
    # Given the confirm page of a link naming the address its message went to
    user = uid()
    key = address_key([KEYING], "email", f"{user}@acme.example")
    link = {"token": make_token(SECRET, user, "email:onboarding", NOW, key)}
    page = api.call("GET", "/v1/unsubscribe", link)[2]
    action = page.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert action == "?" + urlencode(link)

    # When its button is pressed (a browser POSTs the form to the action)
    status, headers, done = api.call(
        "POST", "/v1/unsubscribe", link, body="List-Unsubscribe=One-Click", headers=FORM_POST
    )

    # Then the user and the address are unsubscribed from the topic, and the page says so
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "You&#x27;re unsubscribed from onboarding emails" in done
    assert api.world.ledger.unsubscribed[user] == {"email:onboarding"}
    assert [(k, scope) for k, scope, _ in api.suppressions.records] == [(key, "email:onboarding")]


def test_clicking_twice_is_fine(api: Api) -> None:
    user = uid()
    link = {"token": token(user)}

    assert api.call("POST", "/v1/unsubscribe", link, headers=FORM_POST)[0] == 200
    assert api.call("POST", "/v1/unsubscribe", link, headers=FORM_POST)[0] == 200

    assert api.world.ledger.unsubscribed[user] == {"email:onboarding"}


def test_the_page_escapes_what_the_token_carries(api: Api) -> None:
    for method in ("GET", "POST"):
        status, _, page = api.call(
            method, "/v1/unsubscribe", {"token": token(uid(), "email:<b>x</b>")}, headers=FORM_POST
        )

        assert status == 200
        assert "<b>" not in page
        assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_one_click_post_answers_json(api: Api) -> None:
    user = uid()

    status, headers, body = api.call(
        "POST",
        "/v1/unsubscribe",
        {"token": token(user)},
        body="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"success": True, "scope": "email:onboarding", "errors": []}
    assert api.world.ledger.unsubscribed[user] == {"email:onboarding"}


def test_the_pages_all_email_button_leaves_the_whole_channel(api: Api) -> None:
    # A browser submitting the page's form: Accept text/html, all=1
    user = uid()

    status, headers, page = api.call(
        "POST",
        "/v1/unsubscribe",
        {"token": token(user), "all": "1"},
        body="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "text/html,*/*;q=0.8"},
    )

    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "unsubscribed from all emails" in page
    assert "<form" not in page  # nothing wider to offer
    assert api.world.ledger.unsubscribed[user] == {"email"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_tampered_token_is_400_with_a_clear_message(api: Api, method: str) -> None:
    user = uid()
    forged = token(user).replace(".", ".x", 1)

    status, _, body = api.call(method, "/v1/unsubscribe", {"token": forged})

    assert status == 400
    assert "incomplete or has been changed" in (
        body if method == "GET" else json.loads(body)["errors"][0]["message"]
    )
    assert api.world.ledger.unsubscribed == {}


def test_a_genuine_link_from_a_message_years_old_still_unsubscribes(api: Api) -> None:
    # Given a link signed (with a secret still listed) 400 days ago
    user = uid()
    old = {"token": token(user, at=NOW - timedelta(days=400))}

    # When it is opened and confirmed, Then it works like a new one
    assert api.call("GET", "/v1/unsubscribe", old)[0] == 200
    status, _, body = api.call("POST", "/v1/unsubscribe", old, body="List-Unsubscribe=One-Click")
    assert (status, json.loads(body)["scope"]) == (200, "email:onboarding")
    assert api.world.ledger.unsubscribed[user] == {"email:onboarding"}


def test_a_link_without_its_token_gets_a_page_not_a_field_list(api: Api) -> None:
    status, headers, page = api.call("GET", "/v1/unsubscribe")

    assert status == 400
    assert headers["Content-Type"].startswith("text/html")
    assert "incomplete or has been changed" in page


def test_an_unreadable_secret_is_503_not_a_bad_link(api: Api) -> None:
    api.secrets.clear()

    status, headers, body = api.call("POST", "/v1/unsubscribe", {"token": token(uid())})

    assert status == 503
    assert headers["Retry-After"] == "30"
    assert json.loads(body)["success"] is False


def test_delete_needs_a_key(api: Api) -> None:
    user = uid()
    api.world.add_user(user)

    assert api.call("DELETE", f"/v1/users/{user}")[0] == 401
    assert api.call("DELETE", f"/v1/users/{user}", key="wrong")[0] == 401
    assert user in api.world.usage.users


@pytest.mark.parametrize("ingest_key", [SERVER_KEY, CLIENT_KEY])
@pytest.mark.parametrize(("method", "path"), [("DELETE", "/v1/users/{}"), ("GET", "/v1/users/{}/export")])
def test_an_ingest_key_may_not_erase_or_export(api: Api, ingest_key: str, method: str, path: str) -> None:
    # Given a user, and a live key that may only send events
    user = uid()
    api.world.add_user(user)

    # When it asks for erasure or export
    status, _, body = api.call(method, path.format(user), key=ingest_key)

    # Then it is refused with 403, naming the kind it needs, and nothing is erased
    assert status == 403
    assert "needs a admin key" in json.loads(body)["errors"][0]["message"]
    assert user in api.world.usage.users


def test_an_admin_key_may_not_send_events(api: Api) -> None:
    status, _, body = api.call(
        "POST", "/v1/track", key=KEY, body=json.dumps({"userId": uid(), "event": "login"})
    )

    assert status == 403
    assert "client or server key" in json.loads(body)["errors"][0]["message"]


def test_export_answers_what_nudge_holds_on_the_user(api: Api) -> None:
    # Given a user with state, segment record, a decision and an unsubscribe
    user = uid()
    api.world.add_user(user)

    # When an admin key exports them
    status, headers, body = api.call("GET", f"/v1/users/{user}/export", key=KEY)

    # Then every item erasure would delete is in the document, and it is not cacheable
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    document = json.loads(body)
    assert document["found"] is True
    assert document["usage"]["traits"]["email"]["v"] == f"{user}@acme.example"
    assert document["segments"] is not None
    assert document["delivery"]["unsubscribed"] == ["sms"]
    assert [d["decision"]["decision_id"] for d in document["decisions"]] == [f"d-{user}"]
    assert document["account"] == {"account_id": "acct-1", "traits": {}}


def test_export_of_an_unknown_user_says_nothing_is_held(api: Api) -> None:
    status, _, body = api.call("GET", f"/v1/users/{uid()}/export", key=KEY)

    assert status == 200
    assert json.loads(body)["found"] is False


def test_export_and_erasure_cover_the_same_items() -> None:
    # Given a user with everything a user can have
    w = world()
    user = uid()
    w.add_user(user)

    # When they are exported, erased, and exported again
    before = export_user(user, usage=w.usage, segments=w.segments, ledger=w.ledger)
    w.erase(user)
    after = export_user(user, usage=w.usage, segments=w.segments, ledger=w.ledger)

    # Then the first export held it all and the second holds nothing
    assert before.found
    assert before.usage
    assert before.segments
    assert before.delivery
    assert before.decisions
    assert not after.found
    assert (after.usage, after.segments, after.delivery, after.decisions) == (None, None, None, [])


def test_delete_erases_the_user_and_a_second_delete_answers_zeros(api: Api) -> None:
    user = uid()
    api.world.add_user(user)

    first = api.call("DELETE", f"/v1/users/{user}", key=KEY)
    second = api.call("DELETE", f"/v1/users/{user}", key=KEY)

    assert (first[0], json.loads(first[2])) == (
        200,
        {"success": True, "deleted": {"usage": 2, "ledger": 2}, "anonymized": 0, "merged_into": None},
    )
    assert (second[0], json.loads(second[2])["deleted"]) == (200, {"usage": 0, "ledger": 0})
    assert user not in api.world.usage.users


def test_the_openapi_document_shows_the_privacy_routes(api: Api) -> None:
    status, _, body = api.call("GET", "/v1/openapi.json")

    assert status == 200
    paths = json.loads(body)["paths"]
    assert set(paths["/v1/unsubscribe"]) == {"get", "post"}
    assert "delete" in paths["/v1/users/{userId}"]
    assert "get" in paths["/v1/users/{userId}/export"]
    params = {p["name"]: p for p in paths["/v1/unsubscribe"]["get"]["parameters"]}
    assert params["token"]["required"] is True
    assert params["all"]["required"] is False
    assert set(paths["/v1/unsubscribe"]["get"]["responses"]) >= {"200", "400", "503"}
    assert "410" not in paths["/v1/unsubscribe"]["get"]["responses"]  # a genuine token never expires


# ------------------------------------------------------------------- an id merged into another user


def merge(w: World, old: str, person: str) -> None:
    """`old` aliased into `person`: its state a pointer; its records stay until erased."""
    w.usage.users[old] = Versioned(UserState(user_id=old, merged_into=person), 2)
    kept = w.usage.users[person]
    w.usage.users[person] = Versioned(kept.value.model_copy(update={"merged": [old]}), kept.version + 1)


def test_export_of_a_person_lists_what_each_merged_id_holds(api: Api) -> None:
    person, old = uid(), uid()
    api.world.add_user(person)
    api.world.add_user(old)
    merge(api.world, old, person)

    status, _, body = api.call("GET", f"/v1/users/{person}/export", key=KEY)

    assert status == 200
    document = json.loads(body)
    assert document["user_id"] == person
    assert document["merged_into"] is None
    assert [m["user_id"] for m in document["merged"]] == [old]
    held = document["merged"][0]
    assert held["usage"]["merged_into"] == person
    assert held["segments"] is not None
    assert held["delivery"]["unsubscribed"] == ["sms"]
    assert [d["decision"]["decision_id"] for d in held["decisions"]] == [f"d-{old}"]


def test_export_of_an_id_merged_away_answers_the_person_naming_them(api: Api) -> None:
    person, old = uid(), uid()
    api.world.add_user(person)
    api.world.add_user(old)
    merge(api.world, old, person)

    status, _, body = api.call("GET", f"/v1/users/{old}/export", key=KEY)

    assert status == 200
    document = json.loads(body)
    assert (document["user_id"], document["merged_into"]) == (old, person)
    assert document["usage"]["user_id"] == person
    assert [d["decision"]["decision_id"] for d in document["decisions"]] == [f"d-{person}"]
    assert [m["user_id"] for m in document["merged"]] == [old]


def test_delete_of_an_id_merged_away_erases_the_person_and_names_them(api: Api) -> None:
    person, old = uid(), uid()
    api.world.add_user(person)
    api.world.add_user(old)
    merge(api.world, old, person)

    status, _, body = api.call("DELETE", f"/v1/users/{old}", key=KEY)

    assert status == 200
    assert json.loads(body) == {
        "success": True,
        "deleted": {"usage": 4, "ledger": 4},
        "anonymized": 0,
        "merged_into": person,
    }
    assert person not in api.world.usage.users
    assert old not in api.world.usage.users
    assert not export_user(
        old, usage=api.world.usage, segments=api.world.segments, ledger=api.world.ledger
    ).found
