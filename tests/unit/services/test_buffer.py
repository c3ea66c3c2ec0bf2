"""The buffered front door (nudge.services.buffer): checked and answered per request, folded later
many requests at a time, with the same result as ingesting each request at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nudge.adapters.memory import MemoryIngestBuffer, MemoryUsageStore
from nudge.model.errors import StateConflict, StoreUnavailable
from nudge.model.limits import INGEST_QUEUE_OUTAGE_BODIES
from nudge.model.messages import Alias, Group, Identify, Message, Page, Track
from nudge.model.state import UserState
from nudge.rulebook.plan import load_plan
from nudge.services.buffer import BadQueueBody, drain, enqueue, pack, unpack
from nudge.services.ingest import IngestLimits, ingest

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AGO = NOW - timedelta(hours=1)


def requests() -> list[list[Message]]:
    """One message a request, as a browser SDK sends them: anonymous browsing, identify (a merge,
    traits), group (account traits), a track without messageId or timestamp, a client-key alias."""
    alias = Alias(previousId="dev-9", userId="u1", timestamp=AGO, messageId="m6")
    alias.limit_to_anonymous()
    return [
        [Page(anonymousId="dev-1", name="pricing", timestamp=AGO, messageId="m1")],
        [
            Identify(
                userId="u1",
                anonymousId="dev-1",
                traits={"email": "a@example.com", "plan": "pro"},
                timestamp=AGO,
                messageId="m2",
            )
        ],
        [
            Group(
                userId="u1",
                groupId="acme",
                traits={"name": "Acme", "seats": 5},
                timestamp=AGO,
                messageId="m3",
            )
        ],
        [Track(userId="u1", event="project_created", timestamp=AGO, messageId="m4")],
        [Track(userId="u1", event="login")],
        [alias],
        [Track(userId="u2", event="setup_completed", properties={"step": 2}, timestamp=AGO, messageId="m7")],
    ]


def test_buffered_requests_fold_to_what_ingesting_each_at_once_writes() -> None:
    # Given the same requests ingested at once, and through the queue
    direct = MemoryUsageStore()
    for request in requests():
        assert not ingest(list(enumerate(request)), PLAN, direct, NOW).errors
    queue = MemoryIngestBuffer()
    for request in requests():
        answer = enqueue(list(enumerate(request)), PLAN, queue, NOW, request_id="req")
        assert answer.accepted == len(request)
        assert not answer.errors
    # When the consumer folds every body in one batch
    buffered = MemoryUsageStore()
    drained = drain([unpack(b) for b in queue.bodies], PLAN, buffered, NOW + timedelta(seconds=5))
    # Then the same users, states and account traits, in one write per user instead of one per request
    assert drained.result.accepted == len(queue.bodies)
    assert not drained.result.errors
    assert set(buffered.users) == set(direct.users)
    for user_id, stored in direct.users.items():
        assert buffered.users[user_id].value == stored.value, user_id
    assert buffered.accounts["acme"].value.traits == direct.accounts["acme"].value.traits
    assert buffered.writes < direct.writes


def test_a_redelivered_body_adds_nothing() -> None:
    # Given a request without messageId or timestamp, queued and folded once
    queue = MemoryIngestBuffer()
    enqueue([(0, Track(userId="u1", event="login"))], PLAN, queue, NOW)
    store = MemoryUsageStore()
    drain([unpack(queue.bodies[0])], PLAN, store, NOW + timedelta(seconds=5))
    writes = store.writes
    # When the queue delivers the same body again, a minute later
    again = drain([unpack(queue.bodies[0])], PLAN, store, NOW + timedelta(minutes=1))
    # Then nothing is written: its dedupe key and timestamp were pinned at the front door
    assert store.writes == writes
    assert again.result.users_written == 0
    assert store.users["u1"].value.event_counts == {"login": 1}


def test_bad_messages_are_refused_at_the_front_door_and_never_queued() -> None:
    queue = MemoryIngestBuffer()
    messages: list[tuple[int, Message]] = [
        (0, Track(userId="u1", event="login", timestamp=NOW + timedelta(days=2), messageId="late")),
        (1, Track(userId="u1", event="login", timestamp=AGO, messageId="ok")),
    ]
    result = enqueue(messages, PLAN, queue, NOW)
    assert [(p.index, p.field) for p in result.errors] == [(0, "timestamp")]
    assert result.accepted == 1
    assert [m.messageId for b in queue.bodies for m in unpack(b)] == ["ok"]


def test_a_message_accepted_at_the_front_door_is_not_refused_for_the_time_it_waited() -> None:
    # Given an event at the edge of the retention window when it reached the front door
    limits = IngestLimits(retention=timedelta(days=30))
    queue = MemoryIngestBuffer()
    edge = NOW - timedelta(days=30) + timedelta(seconds=1)
    assert not enqueue(
        [(0, Track(userId="u1", event="login", timestamp=edge, messageId="m"))], PLAN, queue, NOW, limits
    ).errors
    # When it is folded a minute later
    store = MemoryUsageStore()
    drained = drain([unpack(queue.bodies[0])], PLAN, store, NOW + timedelta(minutes=1), limits)
    # Then it is kept (the client was told 200)
    assert drained.result.accepted == 1
    assert not drained.result.errors
    assert store.users["u1"].value.event_counts == {"login": 1}


def test_a_queue_outage_fails_the_request_and_queues_nothing() -> None:
    queue = MemoryIngestBuffer()
    queue.fail = True
    with pytest.raises(StoreUnavailable):
        enqueue([(0, Track(userId="u1", event="login", timestamp=AGO, messageId="m"))], PLAN, queue, NOW)
    assert queue.bodies == []


def test_bodies_stay_under_the_queue_limit_and_keep_the_order() -> None:
    messages: list[Message] = [
        Track(userId="u1", event="login", properties={"pad": "x" * 900}, timestamp=AGO, messageId=f"m{i}")
        for i in range(40)
    ]
    bodies = pack(messages, "req", limit=8 * 1024)
    assert len(bodies) > 1
    assert all(len(b.encode()) <= 8 * 1024 for b in bodies)
    assert [m.messageId for b in bodies for m in unpack(b)] == [f"m{i}" for i in range(40)]
    assert json.loads(bodies[0])["request"] == "req"


@pytest.mark.parametrize(
    "body",
    ["not json", '{"v": 99, "messages": []}', '{"v": 1, "messages": [{"message": {"type": "track"}}]}'],
)
def test_an_unreadable_body_is_named_not_folded(body: str) -> None:
    with pytest.raises(BadQueueBody):
        unpack(body)


# ---------------------------------------------------------------------------- partial failures


class Flaky(MemoryUsageStore):
    """A usage store whose writes of the users in `broken` fail (StoreUnavailable), and which keeps
    the correlation id each user was last written with."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[str] = set()
        self.corr: dict[str, str] = {}

    def save_user(self, state: UserState, version: int, *args: Any, **kwargs: Any) -> None:
        if state.user_id in self.broken:
            raise StoreUnavailable(f"DynamoDB InternalServerError writing {state.user_id}")
        super().save_user(state, version, *args, **kwargs)
        self.corr[state.user_id] = kwargs.get("correlation_id", args[2] if len(args) > 2 else "")


def one_a_request(*messages: Message) -> tuple[list[list[Message]], list[str]]:
    """Each message its own request through the front door: the queue bodies and their request ids."""
    queue = MemoryIngestBuffer()
    requests = []
    for n, message in enumerate(messages):
        requests.append(f"req-{n}")
        assert enqueue([(0, message)], PLAN, queue, NOW, request_id=requests[-1]).accepted == 1
    return [unpack(b) for b in queue.bodies], requests


def test_one_users_failing_write_sends_back_only_that_users_bodies_and_the_retry_counts_once() -> None:
    # Given four one-event requests of three users in one batch, and u2's writes failing
    bodies, requests = one_a_request(
        Track(userId="u1", event="login", timestamp=AGO, messageId="m1"),
        Track(userId="u2", event="login", timestamp=AGO, messageId="m2"),
        Track(userId="u1", event="project_created", timestamp=AGO, messageId="m3"),
        Track(userId="u3", event="login", timestamp=AGO, messageId="m4"),
    )
    store = Flaky()
    store.broken = {"u2"}
    # When the consumer folds the batch
    drained = drain(bodies, PLAN, store, NOW, requests=requests, sleep=lambda _: None)
    # Then only u2's body is to be delivered again; the others are folded
    assert drained.failed == [1]
    assert store.users["u1"].value.event_counts == {"login": 1, "project_created": 1}
    assert store.users["u3"].value.event_counts == {"login": 1}
    assert "u2" not in store.users
    # When the queue redelivers u2's body once the store is back, and (at least once) the others too
    store.broken = set()
    again = drain(bodies, PLAN, store, NOW + timedelta(minutes=3), requests=requests, sleep=lambda _: None)
    # Then u2's login lands, and nothing of the first fold is counted twice
    assert again.failed == []
    assert store.users["u2"].value.event_counts == {"login": 1}
    assert store.users["u1"].value.event_counts == {"login": 1, "project_created": 1}
    assert store.users["u3"].value.event_counts == {"login": 1}


def test_a_store_outage_gives_up_on_the_rest_of_the_batch_after_a_few_bodies() -> None:
    bodies, requests = one_a_request(
        *(Track(userId=f"u{n}", event="login", timestamp=AGO, messageId=f"m{n}") for n in range(10))
    )
    store = Flaky()
    store.broken = {f"u{n}" for n in range(10)}
    tries: list[str] = []
    original = store.load_users

    def counted(user_ids: Any) -> Any:
        tries.extend(user_ids)
        return original(user_ids)

    store.load_users = counted  # type: ignore[method-assign]
    drained = drain(bodies, PLAN, store, NOW, requests=requests, sleep=lambda _: None)
    # Every body comes back, and the body-by-body pass stopped after INGEST_QUEUE_OUTAGE_BODIES
    assert drained.failed == list(range(10))
    assert len(tries) <= 10 + INGEST_QUEUE_OUTAGE_BODIES


def test_each_users_write_carries_the_front_door_request_of_their_newest_message() -> None:
    # Given u1 in two requests and u2 in one, folded in one batch
    bodies, requests = one_a_request(
        Track(userId="u1", event="login", timestamp=AGO, messageId="m1"),
        Track(userId="u2", event="login", timestamp=AGO, messageId="m2"),
        Track(userId="u1", event="project_created", timestamp=AGO, messageId="m3"),
    )
    store = Flaky()
    drain(bodies, PLAN, store, NOW, requests=requests)
    # Then each state written keeps the request behind it (what the evaluator logs its decisions under)
    assert store.corr == {"u1": "req-2", "u2": "req-1"}


def test_a_body_sent_back_leaves_nothing_in_what_the_batch_reports() -> None:
    # Given u2's writes always contended (another writer wins every time)
    class Contended(Flaky):
        def save_user(self, state: UserState, version: int, *args: Any, **kwargs: Any) -> None:
            if state.user_id == "u2":
                raise StateConflict(f"{state.user_id} changed meanwhile")
            super().save_user(state, version, *args, **kwargs)

    bodies, requests = one_a_request(
        Track(userId="u1", event="login", timestamp=AGO, messageId="m1"),
        Track(userId="u2", event="login", timestamp=AGO, messageId="m2"),
    )
    drained = drain(bodies, PLAN, Contended(), NOW, requests=requests, sleep=lambda _: None)
    # Then u2's body comes back, and what the batch reports (logged, counted) holds nothing of it:
    # the body sent back is judged again, and reported then
    assert drained.failed == [1]
    assert drained.result.conflicts == 0
