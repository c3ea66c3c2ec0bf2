"""Client keys' rate limit, counted a lease at a time (LeasedRateCounter): the buffered front door's
one-event requests cost one shared write per lease, and never let more than the budget through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nudge.adapters.memory.rate_limits import FakeRateCounter
from nudge.domain.keys import KeyKind, KeyRecord
from nudge.services.rate_limit import LEASES_KEPT, WINDOW_SECONDS, LeasedRateCounter, check_rate

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


class CountingCounter(FakeRateCounter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def take(self, bucket: str, amount: int, limit: int, expires_at: int) -> bool:
        self.calls += 1
        return super().take(bucket, amount, limit, expires_at)


def key(limit: int) -> KeyRecord:
    return KeyRecord(key_id="browser", kind=KeyKind.CLIENT, sha256="0" * 64, rate_limit=limit)


def test_one_event_requests_write_the_shared_count_once_per_lease() -> None:
    # Given a client key of 100 messages/s (1,000 a window: leases of 10)
    shared = CountingCounter()
    leased = LeasedRateCounter(shared)
    # When 200 one-event requests come to one container within a window
    decisions = [check_rate(leased, key(100), 1, NOW) for _ in range(200)]
    # Then all pass, with 20 shared writes instead of 200
    assert all(d.allowed for d in decisions)
    assert shared.calls == 20


def test_containers_together_never_pass_the_budget_and_the_last_messages_still_fit() -> None:
    # Given three containers sharing one count, a key of 10 messages/s (100 a window), leases of 5
    shared = FakeRateCounter()
    containers = [LeasedRateCounter(shared, share=20) for _ in range(3)]
    # When 150 one-event requests come in turn to each container
    allowed = sum(check_rate(containers[i % 3], key(10), 1, NOW).allowed for i in range(150))
    # Then no more than the window's budget passed, and at most two containers' leases were lost
    budget = 10 * WINDOW_SECONDS
    assert allowed <= budget
    assert allowed >= budget - 2 * (budget // 20)
    assert sum(shared.counts.values()) <= budget


def test_a_batch_larger_than_the_lease_is_counted_at_its_size() -> None:
    shared = CountingCounter()
    leased = LeasedRateCounter(shared)
    assert check_rate(leased, key(100), 500, NOW).allowed
    assert sum(shared.counts.values()) == 500


def test_a_new_window_takes_a_new_lease() -> None:
    shared = CountingCounter()
    leased = LeasedRateCounter(shared)
    check_rate(leased, key(100), 1, NOW)
    later = NOW.replace(second=WINDOW_SECONDS)
    check_rate(leased, key(100), 1, later)
    assert shared.calls == 2
    assert len(shared.counts) == 2


def test_a_key_in_the_middle_of_its_lease_keeps_it_when_old_windows_are_forgotten() -> None:
    # Given a container that has counted LEASES_KEPT - 1 past windows, and a key now mid-lease
    shared = CountingCounter()
    leased = LeasedRateCounter(shared)
    for n in range(LEASES_KEPT - 1):
        old = NOW - timedelta(seconds=WINDOW_SECONDS * (n + 1))
        assert check_rate(leased, key(100), 1, old).allowed
    assert check_rate(leased, key(100), 1, NOW).allowed  # takes a lease of 10, spends 1
    writes = shared.calls
    # When another key's first request makes the container forget (its bucket count is full)
    other = KeyRecord(key_id="app", kind=KeyKind.CLIENT, sha256="1" * 64, rate_limit=100)
    assert check_rate(leased, other, 1, NOW).allowed
    # Then the first key spends what is left of its lease without asking the shared count again
    # (forgetting it would refuse the key early: the lease was counted there already)
    assert all(check_rate(leased, key(100), 1, NOW).allowed for _ in range(9))
    assert shared.calls == writes + 1  # the other key's lease only
    # And nothing was let through that the shared count did not count
    assert sum(shared.counts.values()) >= LEASES_KEPT + 10
