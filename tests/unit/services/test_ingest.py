"""The ingest use case against the in-memory store: checks, one write per user, retries on conflict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nudge.adapters.memory import MemoryUsageStore
from nudge.model.errors import StateConflict
from nudge.model.messages import Group, Identify, Message, Page, Screen, Track
from nudge.model.state import AccountState, RollupDelta, UserState
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import IngestLimits, ingest

PLAN = load_plan(Path("rules"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def indexed(*messages: Message) -> list[tuple[int, Message]]:
    return list(enumerate(messages))


def t(event: str, user: str, mid: str, at: datetime = NOW - timedelta(hours=1)) -> Track:
    return Track(userId=user, event=event, timestamp=at, messageId=mid)


def test_one_write_per_user_touched_not_per_event() -> None:
    store = MemoryUsageStore()
    result = ingest(indexed(*(t("login", f"u{i % 3}", f"m{i}") for i in range(30))), PLAN, store, NOW)
    assert result.accepted == 30
    assert store.writes == 3
    assert store.users["u1"].value.event_counts == {"login": 10}


def test_a_batch_posted_twice_writes_nothing_the_second_time() -> None:
    store = MemoryUsageStore()
    batch = indexed(t("project_created", "u1", "a"), t("login", "u2", "b"))
    ingest(batch, PLAN, store, NOW)
    writes = store.writes
    again = ingest(indexed(t("project_created", "u1", "a"), t("login", "u2", "b")), PLAN, store, NOW)
    assert again.accepted == 2
    assert store.writes == writes
    assert store.users["u1"].value.event_counts == {"project_created": 1}


def test_timestamps_in_the_future_or_past_retention_are_refused_with_a_reason() -> None:
    store = MemoryUsageStore()
    limits = IngestLimits(max_future_skew=timedelta(minutes=10), retention=timedelta(days=30))
    result = ingest(
        indexed(
            t("login", "u1", "future", NOW + timedelta(hours=1)),
            t("login", "u1", "old", NOW - timedelta(days=31)),
            t("login", "u1", "ok", NOW + timedelta(minutes=5)),
        ),
        PLAN,
        store,
        NOW,
        limits,
    )
    assert result.accepted == 1
    assert [(p.index, p.field) for p in result.errors] == [(0, "timestamp"), (1, "timestamp")]
    assert "future" in result.errors[0].message
    assert "retention" in result.errors[1].message


def test_unplanned_events_follow_the_plan_policy() -> None:
    flagged = ingest(indexed(t("made_up", "u1", "x")), PLAN, MemoryUsageStore(), NOW)
    assert flagged.accepted == 1
    assert flagged.warnings[0].field == "event"
    strict = PLAN.model_copy(update={"unplanned_events": "reject"})
    rejected = ingest(indexed(t("made_up", "u1", "x")), strict, MemoryUsageStore(), NOW)
    assert rejected.accepted == 0
    assert "not in the tracking plan" in rejected.errors[0].message


def test_a_message_without_id_or_timestamp_counts_once_when_retried() -> None:
    store = MemoryUsageStore()
    ingest(indexed(Track(userId="u1", event="login")), PLAN, store, NOW)
    ingest(indexed(Track(userId="u1", event="login")), PLAN, store, NOW + timedelta(seconds=3))
    assert store.users["u1"].value.event_counts == {"login": 1}


def test_group_sets_membership_and_account_traits() -> None:
    store = MemoryUsageStore()
    group = Group.model_validate(
        {
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme", "mrr": 2500, "seats": 40},
            "timestamp": NOW,
            "messageId": "g",
        }
    )
    ident = Identify.model_validate(
        {"userId": "u1", "traits": {"email": "ann@acme.example"}, "timestamp": NOW, "messageId": "i"}
    )
    result = ingest(indexed(group, ident, t("project_created", "u1", "p")), PLAN, store, NOW)
    assert result.accounts_written == 1
    assert store.users["u1"].value.account_id == "acme"
    assert store.accounts["acme"].value.trait_values() == {"name": "Acme", "mrr": 2500.0, "seats": 40}
    assert store.load_rollup("acme").feature_adopters == {"projects": 1}


class ConflictOnce(MemoryUsageStore):
    """Another writer sneaks in once before our first write of each user."""

    def __init__(self) -> None:
        super().__init__()
        self.raced: set[str] = set()

    def save_user(
        self,
        state: UserState,
        version: int,
        rollup: RollupDelta | None,
        now: datetime,
        correlation_id: str = "",
        absorbed: Sequence[tuple[str, int]] = (),
    ) -> None:
        if state.user_id not in self.raced:
            self.raced.add(state.user_id)
            other = UserState(user_id=state.user_id)
            super().save_user(other.model_copy(update={"traits": {}}), version, None, now)
            raise StateConflict(state.user_id)
        super().save_user(state, version, rollup, now, absorbed=absorbed)

    def save_account(self, state: AccountState, version: int, now: datetime) -> None:
        super().save_account(state, version, now)


def test_a_conflicting_write_is_reread_refolded_and_retried() -> None:
    store = ConflictOnce()
    result = ingest(indexed(t("login", "u1", "a")), PLAN, store, NOW, sleep=lambda _: None)
    assert result.conflicts == 1
    assert store.users["u1"].version == 2
    assert store.users["u1"].value.event_counts == {"login": 1}


# --- declared properties ------------------------------------------------------------------------


def premium(user: str, mid: str, **properties: object) -> Track:
    return Track(
        userId=user,
        event="premium_feature_attempted",
        timestamp=NOW - timedelta(hours=1),
        messageId=mid,
        properties=properties,
    )


def test_a_property_of_the_wrong_type_is_refused_naming_event_property_and_type() -> None:
    store = MemoryUsageStore()
    result = ingest(
        indexed(premium("u1", "ok", feature="sso"), premium("u1", "bad", feature=3)), PLAN, store, NOW
    )
    assert result.accepted == 1
    [error] = result.errors
    assert (error.index, error.field) == (1, "properties.feature")
    assert "premium_feature_attempted" in error.message
    assert "'feature' should be a string, got number 3" in error.message
    assert store.users["u1"].value.events["premium_feature_attempted"].count == 1


def test_a_value_outside_the_enum_and_a_missing_required_property_are_refused() -> None:
    store = MemoryUsageStore()
    invoice = Track(userId="u1", event="invoice_paid", timestamp=NOW - timedelta(hours=1), messageId="i")
    result = ingest(indexed(premium("u1", "p", feature="ssso"), invoice), PLAN, store, NOW)
    assert result.accepted == 0
    messages = {e.index: e.message for e in result.errors}
    assert "'ssso' is not one of the allowed values (sso, audit_log" in messages[0]
    assert messages[1] == "event 'invoice_paid' requires property 'revenue' (number)"


def test_under_the_flag_policy_a_mismatch_is_kept_warned_and_not_kept_in_state() -> None:
    store = MemoryUsageStore()
    plan = PLAN.model_copy(update={"property_errors": "flag"})
    result = ingest(indexed(premium("u1", "bad", feature=3)), plan, store, NOW)
    assert result.accepted == 1
    assert not result.errors
    [warning] = result.warnings
    assert warning.field == "properties.feature"
    assert "accepted and flagged" in warning.message
    stats = store.users["u1"].value.events["premium_feature_attempted"]
    assert stats.count == 1
    assert stats.props is not None
    assert stats.props.values == {}
    assert stats.props.last == {}


def test_undeclared_properties_are_accepted_and_ignored() -> None:
    store = MemoryUsageStore()
    result = ingest(indexed(premium("u1", "p", feature="sso", colour={"any": ["shape"]})), PLAN, store, NOW)
    assert result.accepted == 1
    assert not result.errors
    assert not result.warnings


def test_a_text_value_too_long_to_keep_is_accepted_with_a_warning() -> None:
    store = MemoryUsageStore()
    page = Track(
        userId="u1", event="page_viewed", timestamp=NOW - timedelta(hours=1), messageId="p",
        properties={"name": "x" * 101},
    )  # fmt: skip
    result = ingest(indexed(page), PLAN, store, NOW)
    assert result.accepted == 1
    [warning] = result.warnings
    assert "over 100 characters" in warning.message
    props = store.users["u1"].value.events["page_viewed"].props
    assert props is not None
    assert props.values == {}


def test_a_page_name_is_the_page_viewed_name_property() -> None:
    store = MemoryUsageStore()
    page = Page(userId="u1", name="Pricing", timestamp=NOW - timedelta(hours=1), messageId="p")
    screen = Screen(userId="u1", name="Settings", timestamp=NOW - timedelta(hours=1), messageId="s")
    ingest(indexed(page, screen), PLAN, store, NOW)
    events = store.users["u1"].value.events
    assert list(events["page_viewed"].props.values["name"]) == ["Pricing"]  # type: ignore[union-attr]
    assert list(events["screen_viewed"].props.values["name"]) == ["Settings"]  # type: ignore[union-attr]


def test_a_page_name_of_the_wrong_type_names_the_name_field() -> None:
    page = Page.model_validate(
        {
            "userId": "u1",
            "properties": {"name": False},
            "timestamp": NOW - timedelta(hours=1),
            "messageId": "p",
        }
    )
    result = ingest(indexed(page), PLAN, MemoryUsageStore(), NOW)
    [error] = result.errors
    assert error.field == "properties.name"
    assert "should be a string, got boolean false" in error.message
