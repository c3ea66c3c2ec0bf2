"""Fuzzing every route of the local stack's HTTP API (issue 14, part 6).

schemathesis generates requests from the OpenAPI document the ingest function serves (every operation;
its coverage cases, then generated ones, valid and not), and each goes to the running local stack
three ways: as generated (no key, or a made-up one), with the key kind its route declares (a server or
client write key for the tracking routes, the admin key for export and erasure, nothing for the
public ones), and with a key of the wrong kind. Never a 5xx; every answer as the document declares
it; a route that declares a key refuses the others (401, 403). Meanwhile, valid messages for users
of its own are sent before and during the fuzzing of each route, from another thread (so they race
the fuzzer's requests in the stack's containers), and each is there afterwards, counted once, read
back through the admin export.

Seeds, for CI: no example database (`database=None`: a failure must replay from the seed alone, and a
CI machine starts empty anyway), and not derandomized, so each run tries new cases: `make unit` gives
hypothesis the run's seed (`--hypothesis-seed`, the seed that also orders the tests) and prints it,
and `make unit SEED=<seed>` draws the same cases again. A targeted run without a seed draws one, and
hypothesis prints it with a failure (`--hypothesis-seed=<seed>` replays it). Only which cases are
tried varies between runs; what a case must get does not depend on timing (a 429 from the client
key's rate limit is documented, and the witness's sends must each succeed whenever they land).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from nudge.entrypoints.http.ingest_api import openapi_json

if TYPE_CHECKING:
    from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

# Bounded for `make test` (2 cores): the coverage cases of each operation, then this many generated.
EXAMPLES_PER_OPERATION = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Refused before the key is read: a body over the limit, not UTF-8, nested too deep (entrypoints/http/body.py).
REFUSED_BEFORE_THE_KEY = {400, 413}
# The witness: how many users, how often and how many times it sends while a route is fuzzed.
WITNESS_USERS = 3
WITNESS_PERIOD_SECONDS = 0.2
WITNESS_MAX_SENDS = 10

# The document the ingest function generates, loaded at collection time: schemathesis' lazy
# (fixture-based) loader does not run on pytest 9. A test below checks the local stack serves exactly
# this document, and that it has an operation for every route the stack serves.
DOCUMENT = json.loads(openapi_json())
# Methods the document doesn't declare are sent too (its coverage cases), except TRACE and QUERY:
# requests can't send them with a body (tests/e2e/test_hostile_input.py sends them by hand).
UNDECLARED_METHODS = ["get", "put", "post", "delete", "options", "patch"]
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "phases": {"coverage": {"unexpected-methods": UNDECLARED_METHODS}},
            # The short paths (/v1/t, ...) run the same code on the same schemas as the long ones:
            # generated cases only, not the coverage cases again (half the run's time).
            "operations": [{"include-path-regex": "^/v1/[a-z]$", "phases": {"coverage": {"enabled": False}}}],
        }
    ),
)
# Served, but not operations of the document: the document itself, and CORS preflights (any path).
NOT_IN_THE_DOCUMENT = {"GET /v1/openapi.json", "OPTIONS /{proxy+}"}


def basic(key: str) -> str:
    """Segment's way: the key is the Basic username, the password empty."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def declared_kind(operation: Any) -> str | None:
    """The key kind an operation declares ("writeKey" or "adminKey"), or None for a public one. The
    in-app routes also declare the user's token, which the fuzzer does not have: with the right key
    they answer 401 (or 400 for a body they refuse first), as documented."""
    schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    schemes.discard("userToken")
    if not schemes:
        return None
    assert schemes in ({"writeKey", "writeKeyBearer"}, {"adminKey", "adminKeyBearer"}), schemes
    return "adminKey" if "adminKey" in schemes else "writeKey"


def valid_key(api: Api, kind: str, turn: int) -> dict[str, str]:
    """The key kind a route declares, in turn as Basic and Bearer; for the tracking routes, a server
    key, then the client key from its page's origin."""
    origin = None
    if kind == "adminKey":
        key = api.admin_key
    elif turn % 4 < 2:
        key = api.write_key
    else:
        key, origin = api.client_key, api.client_origin
    headers = {"Authorization": basic(key) if turn % 2 else f"Bearer {key}"}
    return headers | ({"Origin": origin} if origin else {})


def wrong_kind(api: Api, kind: str) -> dict[str, str]:
    return {"Authorization": basic(api.write_key if kind == "adminKey" else api.admin_key)}


@dataclass
class Witness:
    """Valid messages for users of its own, sent before a route is fuzzed and during it (from a
    thread), and what each user must hold afterwards. Each send is a batch: a new login per user, the
    previous send's login again (same messageId: counts once), a trait, and the users' account."""

    api: Api
    users: list[str] = field(
        default_factory=lambda: [f"witness-{uuid.uuid4().hex[:12]}" for _ in range(WITNESS_USERS)]
    )
    account: str = field(default_factory=lambda: f"witness-acct-{uuid.uuid4().hex[:8]}")
    logins: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    sends: int = 0
    _previous: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def send(self, session: requests.Session) -> None:
        now = self.api.stack.clock.now().isoformat()
        logins = [
            {"type": "track", "userId": u, "event": "login", "messageId": uuid.uuid4().hex, "timestamp": now}
            for u in self.users
        ]
        others: list[dict[str, Any]] = [
            *[{"type": "identify", "userId": u, "traits": {"witness_round": self.sends}} for u in self.users],
            *[{"type": "group", "userId": u, "groupId": self.account} for u in self.users],
        ]
        batch = [*logins, *self._previous, *others]
        response = session.post(
            f"{self.api.base_url}/v1/batch",
            json={"batch": batch},
            headers={"Authorization": basic(self.api.write_key)},
            timeout=60,
        )
        if response.status_code != 200 or response.json()["accepted"] != len(batch):
            self.refused.append(f"send {self.sends}: {response.status_code} {response.text[:500]}")
            return
        self.logins.update(m["userId"] for m in logins)
        self._previous = logins
        self.sends += 1

    def __enter__(self) -> Witness:
        self.send(self.api.session)  # before
        self._thread = threading.Thread(target=self._during, name="fuzz-witness", daemon=True)
        self._thread.start()
        return self

    def _during(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(WITNESS_PERIOD_SECONDS) and self.sends < WITNESS_MAX_SENDS:
                self.send(session)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def all_there(self) -> list[str]:
        """What is missing or wrong in each user's export (empty when all is there)."""
        problems = list(self.refused)
        for user in self.users:
            response = self.api.session.get(
                f"{self.api.base_url}/v1/users/{user}/export",
                headers={"Authorization": basic(self.api.admin_key)},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            export = response.json()
            usage = export["usage"] or {}
            logins = ((usage.get("events") or {}).get("login") or {}).get("count")
            last_round = ((usage.get("traits") or {}).get("witness_round") or {}).get("v")
            held = (logins, last_round, (export["account"] or {}).get("account_id"))
            sent = (self.logins[user], self.sends - 1, self.account)
            if held != sent:
                problems.append(f"{user}: holds (logins, last round, account) {held}, was sent {sent}")
        return problems


@pytest.fixture
def witness(api: Api) -> Iterator[Witness]:
    """Valid messages around the fuzzing of one route, checked once it is done: a failure here is
    reported at the test's teardown, naming what went missing."""
    with Witness(api) as sent:
        yield sent
    problems = sent.all_there()
    assert not problems, "valid messages sent while fuzzing went missing:\n" + "\n".join(problems)
    assert sent.sends >= 1


def test_the_fuzzed_document_is_the_one_served_and_has_every_route(api: Api) -> None:
    response = api.session.get(f"{api.base_url}/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    documented = {f"{method.upper()} {path}" for path, ops in DOCUMENT["paths"].items() for method in ops}
    served = {route.key for route in api.stack.routes}
    assert documented == served - NOT_IN_THE_DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_as_documented_with_its_key_and_without(
    case: Any, api: Api, witness: Witness, turns: Iterator[int]
) -> None:
    kind = declared_kind(case.operation)
    undeclared_method = case.method.upper() != case.operation.method.upper()
    key = {} if kind is None or undeclared_method else valid_key(api, kind, next(turns))
    # With the key kind the route declares (none for the public routes): whatever it answers, as
    # documented.
    response = case.call(base_url=api.base_url, session=api.session, headers=key, timeout=60)
    if undeclared_method or response.status_code == 404:
        # A method the route hasn't, or a path no route has (coverage cases send both): API Gateway's
        # own 404, or, for OPTIONS, the CORS preflight's answer (any path: template.yaml).
        if case.method.upper() == "OPTIONS":
            assert response.status_code in {204, 403}, (response.status_code, response.text)
        else:
            assert (response.status_code, response.json()) == (404, {"message": "Not Found"})
        return
    case.validate_response(response, checks=CHECKS)
    if kind is None or case.meta is None or case.meta.phase.name != "fuzzing":
        return
    # The generated cases again (the coverage cases are many, and send only the above): as generated,
    # with no key or a made-up one, then with a key of the wrong kind. Both refused, as documented.
    response = case.call(base_url=api.base_url, session=api.session, timeout=60)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code in {401, *REFUSED_BEFORE_THE_KEY}, (response.status_code, response.text)
    response = case.call(
        base_url=api.base_url, session=api.session, headers=wrong_kind(api, kind), timeout=60
    )
    case.validate_response(response, checks=CHECKS)
    assert response.status_code in {403, *REFUSED_BEFORE_THE_KEY}, (response.status_code, response.text)


@pytest.fixture
def turns() -> Iterator[int]:
    """Counts a route's examples, to take its keys in turn."""
    return itertools.count()


# Header values as requests can send them: printable ASCII.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)


@given(
    path=st.sampled_from(sorted(DOCUMENT["paths"]))
    | st.from_regex(r"/[A-Za-z0-9_~%{}-][A-Za-z0-9_~%/{}-]{0,40}", fullmatch=True),
    origin=st.sampled_from(["https://app.e2e.example", "https://evil.example", "null", ""]) | HEADER_TEXT,
    method=st.sampled_from(["POST", "GET", "DELETE", "PUT"]) | HEADER_TEXT,
    headers=st.sampled_from(["content-type", "authorization", "content-type, authorization, x-custom"])
    | HEADER_TEXT,
)
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_a_cors_preflight_to_any_path_is_granted_or_refused_never_a_5xx(
    api: Api, path: str, origin: str, method: str, headers: str
) -> None:
    # The one route the document does not have: OPTIONS on any path (no dot segments: the client
    # resolves them), answered by the ingest function.
    response = api.session.options(
        api.base_url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
        timeout=60,
    )
    assert response.status_code in {204, 403}, (path, origin, response.status_code, response.text)
    if response.status_code == 204:
        assert response.headers["Access-Control-Allow-Origin"] == origin == api.client_origin
