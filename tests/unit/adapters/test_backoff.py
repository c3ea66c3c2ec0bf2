"""The one backoff: attempts, full-jitter delays between them (never after the last), and the
DynamoDB batch calls that use it for what DynamoDB left unprocessed."""

from __future__ import annotations

from typing import Any

import pytest

from nudge.adapters.dynamo import calls
from nudge.backoff import CONTENTION, Backoff
from nudge.model.errors import StoreUnavailable


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def test_tries_sleep_between_attempts_with_growing_capped_delays_and_not_after_the_last() -> None:
    # Given 5 attempts from 0.1 s capped at 0.3 s, with the jitter at its top
    sleeps = Sleeps()
    backoff = Backoff(attempts=5, base_delay=0.1, max_delay=0.3, sleep=sleeps, rng=lambda: 1.0)
    # When every attempt fails
    tried = list(backoff.tries())
    # Then all 5 ran, with 4 sleeps between them: doubling, then held at the cap
    assert tried == [0, 1, 2, 3, 4]
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_a_loop_that_succeeds_first_time_never_sleeps() -> None:
    sleeps = Sleeps()
    for attempt in Backoff(sleep=sleeps).tries():
        assert attempt == 0
        break
    assert sleeps.delays == []


def test_jitter_draws_each_delay_below_its_ceiling() -> None:
    # Given a jitter that draws a quarter of the ceiling
    backoff = Backoff(base_delay=0.4, max_delay=10.0, rng=lambda: 0.25)
    # Then each delay is a quarter of base * 2**attempt
    assert [backoff.delay(a) for a in range(3)] == pytest.approx([0.1, 0.2, 0.4])


def test_with_attempts_keeps_the_delays_and_at_least_one_attempt_is_required() -> None:
    assert CONTENTION.with_attempts(3).attempts == 3
    assert CONTENTION.with_attempts(3).max_delay == CONTENTION.max_delay
    with pytest.raises(ValueError, match="attempts"):
        list(Backoff(attempts=0).tries())


class Throttled:
    """A DynamoDB client whose BatchGetItem leaves the last key unprocessed `times` times."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        keys = RequestItems["t"]["Keys"]
        if self.times:
            self.times -= 1
            return {"Responses": {"t": keys[:-1]}, "UnprocessedKeys": {"t": {"Keys": keys[-1:]}}}
        return {"Responses": {"t": keys}}


def test_batch_get_asks_again_for_unprocessed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "THROTTLING", Backoff(attempts=8, sleep=lambda _s: None))
    # Given a client that leaves one key unprocessed twice
    client = Throttled(times=2)
    keys = [{"pk": {"S": f"k{i}"}} for i in range(3)]
    # When the keys are read
    items = calls.batch_get(client, "t", keys)
    # Then every key came back, the last after two more requests
    assert sorted(i["pk"]["S"] for i in items) == ["k0", "k1", "k2"]
    assert client.calls == 3


def test_batch_get_gives_up_as_store_unavailable_when_keys_stay_unprocessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(calls, "THROTTLING", Backoff(attempts=8, sleep=lambda _s: None))
    # Given a client that never processes the last key
    client = Throttled(times=1000)
    # When keys are read, Then the store is unavailable after the attempts, naming what is left
    with pytest.raises(StoreUnavailable, match="1 reads unprocessed"):
        calls.batch_get(client, "t", [{"pk": {"S": "k0"}}, {"pk": {"S": "k1"}}])
    assert client.calls == calls.BATCH_ATTEMPTS


def test_batch_get_waits_a_jittered_backoff_before_asking_again_for_unprocessed_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the throttling backoff with its jitter at the middle, and a client that leaves a key
    # unprocessed twice (a tight loop would ask again at once, keeping the table throttled)
    sleeps = Sleeps()
    monkeypatch.setattr(
        calls, "THROTTLING", Backoff(attempts=8, base_delay=0.05, sleep=sleeps, rng=lambda: 0.5)
    )
    client = Throttled(times=2)
    # When the keys are read
    calls.batch_get(client, "t", [{"pk": {"S": "k0"}}, {"pk": {"S": "k1"}}])
    # Then each request again came after a delay, growing: half of 0.05 s, then half of 0.1 s
    assert client.calls == 3
    assert sleeps.delays == [pytest.approx(0.025), pytest.approx(0.05)]
