"""Unsubscribe links, export and erasure after an identity merge (in-memory adapters): a link sent
to an id later aliased away still unsubscribes the person; export covers the ids erasure erases;
an id merged away answers for (export) and takes with it (erasure) the person it points to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nudge.adapters.memory import (
    MemoryAccountLedger,
    MemoryLedger,
    MemoryRechecks,
    MemoryRouter,
    MemorySegmentStore,
    MemoryUsageStore,
)
from nudge.domain.tokens import make_token
from nudge.model.ledger import Commit, LedgerEntry
from nudge.model.segments import SegmentRecord
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.erasure import Erasure, erase_user
from nudge.services.export import UserExport, export_user
from nudge.services.unsubscribe import unsubscribe
from tests.unit.services.test_dispatch import NOON, RULES, batch, decision, world
from tests.unit.services.test_identity import alias, send

SECRET = b"s" * 32


def merged_world() -> tuple[MemoryUsageStore, MemoryLedger]:
    """old-id, sent finish_setup, then aliased into u1; u1's dispatch has adopted old-id's record
    (its decision a day later suppressed by the cooldown old-id started)."""
    ports = world(("old-id", "u1"))
    assert isinstance(ports.usage, MemoryUsageStore)
    assert isinstance(ports.ledger, MemoryLedger)
    first = dispatch(batch(decision("finish_setup", user="old-id"), user="old-id"), RULES, ports, NOON)
    assert [v.outcome for v in first.verdicts] == ["send"]
    send(ports.usage, alias("old-id", "u1", "alias-1"))
    assert ports.usage.users["old-id"].value.merged_into == "u1"
    later = NOON + timedelta(days=1)
    judged = dispatch(batch(decision("finish_setup", user="u1", at=later), user="u1"), RULES, ports, later)
    assert [(v.outcome, v.reason) for v in judged.verdicts] == [("suppressed", "cooldown")]
    assert ports.ledger.load("u1", None, []).record.value.adopted == ["old-id"]
    return ports.usage, ports.ledger


def test_a_link_sent_before_an_alias_unsubscribes_the_person_it_was_merged_into() -> None:
    # Given old-id was aliased into u1 and u1's dispatch already adopted old-id's delivery record
    usage, ledger = merged_world()
    # When the person clicks the unsubscribe link of an email sent to old-id
    token = make_token(SECRET, "old-id", "email:onboarding", NOON)
    now = NOON + timedelta(days=5)
    done = unsubscribe(
        token, whole_channel=True, secrets=lambda: [SECRET], ledger=ledger, usage=usage, now=now
    )
    # Then the person's own delivery record holds it (and the old id's too)
    assert done.scope == "email"
    assert "email" in ledger.load("u1", None, []).record.value.unsubscribed
    assert "email" in ledger.load("old-id", None, []).record.value.unsubscribed
    # And the next email to the person is suppressed as unsubscribed
    ports = DispatchPorts(ledger=ledger, usage=usage, router=MemoryRouter(), rechecks=MemoryRechecks())
    later = NOON + timedelta(days=8)
    result = dispatch(batch(decision("finish_setup", user="u1", at=later), user="u1"), RULES, ports, later)
    assert [(v.outcome, v.reason) for v in result.verdicts] == [("suppressed", "unsubscribed")]


def test_an_unsubscribe_follows_a_chain_of_merges_to_the_person() -> None:
    usage, ledger = MemoryUsageStore(), MemoryLedger()
    usage.users["a"] = Versioned(UserState(user_id="a", merged_into="b"), 2)
    usage.users["b"] = Versioned(UserState(user_id="b", merged_into="c"), 2)
    usage.users["c"] = Versioned(UserState(user_id="c", merged=["b", "a"]), 3)
    token = make_token(SECRET, "a", "email:tips", NOON)

    unsubscribe(token, whole_channel=False, secrets=lambda: [SECRET], ledger=ledger, usage=usage, now=NOON)

    assert ledger.unsubscribed["c"] == {"email:tips"}
    assert "b" not in ledger.unsubscribed


def test_an_unsubscribe_of_an_id_never_merged_writes_only_that_id() -> None:
    usage, ledger = MemoryUsageStore(), MemoryLedger()
    token = make_token(SECRET, "stranger", "email:tips", NOON)

    unsubscribe(token, whole_channel=False, secrets=lambda: [SECRET], ledger=ledger, usage=usage, now=NOON)

    assert ledger.unsubscribed == {"stranger": {"email:tips"}}


# --------------------------------------------------------------------------- export and erasure


class Person:
    """u1, into whom old-id (aliased) and anon:dev-1 (identified) were merged, each with records."""

    def __init__(self) -> None:
        usage, ledger = merged_world()
        self.usage, self.ledger = usage, ledger
        self.segments = MemorySegmentStore()
        self.accounts = MemoryAccountLedger(ledger)
        for user in ("old-id", "u1"):
            self.segments.save(user, SegmentRecord(next_check_at=NOON + timedelta(days=1)), 0, NOON)
        usage.users["anon:dev-1"] = Versioned(UserState(user_id="anon:dev-1", merged_into="old-id"), 2)

    def export(self, user_id: str) -> UserExport:
        return export_user(user_id, usage=self.usage, segments=self.segments, ledger=self.ledger)

    def erase(self, user_id: str) -> Erasure:
        return erase_user(
            user_id, usage=self.usage, segments=self.segments, ledger=self.ledger, accounts=self.accounts
        )


def test_export_of_a_person_holds_every_id_merged_into_them_labelled() -> None:
    p = Person()

    held = p.export("u1")

    assert held.user_id == "u1"
    assert held.merged_into is None
    assert held.usage is not None
    assert held.usage["merged"] == ["old-id", "anon:old-id"]
    # Deepest first, as erasure goes (the alias also merged anon:old-id); each with its own records
    assert [m["user_id"] for m in held.merged] == ["anon:dev-1", "old-id", "anon:old-id"]
    old = held.merged[1]
    assert old["usage"] == UserState(user_id="old-id", merged_into="u1").model_dump(mode="json")
    assert old["segments"] is not None
    assert old["delivery"] is not None
    assert [d["decision"]["user"] for d in old["decisions"]] == ["old-id"]
    assert held.merged[0]["usage"]["merged_into"] == "old-id"


def test_export_of_an_id_merged_away_answers_the_person_and_names_them() -> None:
    p = Person()

    held = p.export("old-id")

    assert held.user_id == "old-id"
    assert held.merged_into == "u1"
    assert held.usage is not None
    assert held.usage["user_id"] == "u1"
    assert {m["user_id"] for m in held.merged} == {"anon:dev-1", "old-id", "anon:old-id"}
    # A device merged into old-id leads, through it, to the same person
    assert p.export("anon:dev-1").merged_into == "u1"
    assert p.export("anon:dev-1").usage == held.usage


def test_erasing_an_id_merged_away_erases_the_whole_person() -> None:
    p = Person()

    erased = p.erase("old-id")

    assert erased.merged_into == "u1"
    assert p.usage.users == {}
    assert p.ledger.records == {}
    assert p.ledger.unsubscribed == {}
    assert p.ledger.entries == {}
    assert p.segments.load(["u1"])["u1"].version == 0
    assert p.segments.load(["old-id"])["old-id"].version == 0
    for user in ("u1", "old-id", "anon:dev-1"):
        assert not p.export(user).found


def test_export_and_erasure_of_a_person_cover_the_same_ids() -> None:
    p = Person()

    before = p.export("u1")
    p.erase("u1")
    after = p.export("u1")

    assert before.found
    assert before.merged
    assert not after.found
    assert after.merged == ()
    assert p.usage.users == {}
    assert p.ledger.entries == {}


def test_an_erasure_of_an_id_merged_away_that_fails_half_way_is_finished_by_a_retry() -> None:
    # Given the ledger fails when erasure reaches the person
    p = Person()
    failing = {"u1"}
    erase_ledger = p.ledger.erase_user

    def flaky(user_id: str) -> int:
        if user_id in failing:
            failing.discard(user_id)
            raise RuntimeError("ledger unavailable")
        return erase_ledger(user_id)

    p.ledger.erase_user = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        p.erase("old-id")
    # When the same id is erased again
    erased = p.erase("old-id")
    # Then the pointer still led to the person, and everything is gone
    assert erased.merged_into == "u1"
    assert p.usage.users == {}
    assert p.ledger.entries == {}
    assert p.ledger.records == {}


def test_an_entry_committed_for_a_merged_id_is_exported_under_that_id() -> None:
    p = Person()
    late = decision("finish_setup", user="anon:dev-1")
    p.ledger.commit(
        Commit(
            "anon:dev-1",
            None,
            0,
            (LedgerEntry(decision=late, outcome="send", status="queued", recorded_at=NOON, updated_at=NOON),),
            frozenset(),
        ),
        NOON,
    )

    held = p.export("u1")

    assert [d["decision"]["decision_id"] for d in held.merged[0]["decisions"]] == [late.decision_id]
    assert late.decision_id not in [d["decision"]["decision_id"] for d in held.decisions]
