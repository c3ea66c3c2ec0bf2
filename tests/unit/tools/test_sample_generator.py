"""The sample history generator: deterministic, valid Segment messages, and personas that behave as named."""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from nudge.model.messages import Message
from nudge.rulebook.plan import TrackingPlan, load_plan
from nudge.tools.samples import commands
from nudge.tools.samples.catalog import HIGH_VALUE_MRR, ONBOARDING
from nudge.tools.samples.generator import SampleHistory, build_history, generate
from nudge.tools.samples.ndjson import NdjsonError, read_ndjson, write_ndjson
from nudge.tools.samples.personas import PERSONA_SHARES, Persona
from nudge.tools.samples.roster import simulated_address

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 7, 1, tzinfo=UTC)
DAY = 86_400
WEEK = 7 * DAY
MONDAY0 = 4 * DAY  # 1970-01-05 was a Monday
MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


@pytest.fixture(scope="module")
def plan() -> TrackingPlan:
    return load_plan(ROOT / "rules")


@dataclass
class Digest:
    """What the tests need from one pass over a history, without holding every message."""

    history: SampleHistory
    count: int = 0
    types: Counter[str] = field(default_factory=Counter)
    # user -> [(epoch seconds, event)] of track messages, in time order
    tracks: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    last_message: dict[str, float] = field(default_factory=dict)
    grouped: dict[str, str] = field(default_factory=dict)
    identified: set[str] = field(default_factory=set)
    timestamps_sorted: bool = True
    first: float = float("inf")
    last: float = float("-inf")


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def digest(history: SampleHistory, validate_every: int = 0) -> Digest:
    out = Digest(history)
    previous = float("-inf")
    for index, message in enumerate(history.messages()):
        if validate_every and index % validate_every == 0:
            MESSAGE.validate_python(message)
        out.count += 1
        out.types[message["type"]] += 1
        at = _epoch(message["timestamp"])
        out.timestamps_sorted &= at >= previous
        previous = at
        out.first, out.last = min(out.first, at), max(out.last, at)
        user = message["userId"]
        out.last_message[user] = at
        if message["type"] == "track":
            out.tracks[user].append((at, message["event"]))
        elif message["type"] == "group":
            out.grouped[user] = message["groupId"]
        else:
            out.identified.add(user)
    return out


@pytest.fixture(scope="module")
def big() -> Digest:
    """The demo's size: 1,000 users, 100 accounts, 90 days (a few seconds)."""
    return digest(build_history(users=1000, accounts=100, days=90, seed=7, start=START), validate_every=97)


def small_history() -> SampleHistory:
    """What samplefiles/sample-small.ndjson holds."""
    return build_history(users=60, accounts=6, days=30, seed=7, start=datetime(2026, 10, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def small() -> Digest:
    """The committed sample's size: 30 days are too few for anyone to be dormant 30 days."""
    return digest(small_history(), validate_every=1)


@pytest.fixture(params=["big", "small"])
def either(request: pytest.FixtureRequest) -> Digest:
    """Persona properties must hold in the demo's history and in the short committed one."""
    result: Digest = request.getfixturevalue(request.param)
    return result


def window(d: Digest) -> tuple[float, float]:
    return d.history.start.timestamp(), d.history.end.timestamp()


def meaningful_sessions(tracks: list[tuple[float, str]], plan: TrackingPlan) -> list[float]:
    """Session starts, as the tracking plan defines sessions: meaningful events under 30 min apart."""
    gap = plan.session_gap.total_seconds()
    starts: list[float] = []
    last = float("-inf")
    for at, event in tracks:
        if event not in plan.meaningful:
            continue
        if at - last > gap:
            starts.append(at)
        last = at
    return starts


def weekly(starts: list[float], window_start: float, window_end: float) -> list[tuple[int, int, bool]]:
    """(UTC Monday, sessions, is the week wholly inside the window) for every week of the window."""
    first_monday = MONDAY0 + ((int(window_start) - MONDAY0) // WEEK) * WEEK
    counts = Counter(MONDAY0 + ((int(s) - MONDAY0) // WEEK) * WEEK for s in starts)
    return [
        (monday, counts[monday], monday >= window_start and monday + WEEK <= window_end)
        for monday in range(first_monday, int(window_end), WEEK)
    ]


def users_of(d: Digest, persona: Persona) -> list[str]:
    return [uid for uid, p in d.history.personas.items() if p is persona]


# --- determinism and shape ----------------------------------------------------------------------


def test_same_seed_same_messages_and_different_seed_different() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        return list(generate(users=40, accounts=5, days=21, seed=seed, start=START))

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    history = build_history(users=40, accounts=5, days=21, seed=3, start=START)
    assert list(history.messages()) == list(history.messages())  # re-iterable, same each time


def test_every_message_is_valid_segment_and_planned(plan: TrackingPlan) -> None:
    history = build_history(users=60, accounts=6, days=30, seed=7, start=START)
    ids = set()
    for raw in history.messages():
        message = MESSAGE.validate_python(raw)
        assert message.timestamp is not None
        assert message.timestamp.tzinfo is not None
        ids.add(message.messageId)
        if raw["type"] == "track":
            assert plan.is_planned(raw["event"]), raw["event"]
            assert raw["context"] == {"library": {"name": "nudge-sample", "version": "1"}}
    assert len(ids) > 1000  # messageIds are unique


def test_big_history_is_sorted_within_window_and_planned(big: Digest, plan: TrackingPlan) -> None:
    assert 100_000 <= big.count <= 300_000
    assert big.timestamps_sorted
    assert big.first >= START.timestamp()
    assert big.last < (START + timedelta(days=90)).timestamp()
    events = {event for tracks in big.tracks.values() for _, event in tracks}
    assert events <= set(plan.events)
    # The whole plan is exercised, but for the mobile app's screens: the sample is the web app's.
    # Nor Nudge's own in-app events, which its inbox posts (survey answers included).
    in_app = {"in_app_seen", "in_app_clicked", "in_app_dismissed", "survey_answered"}
    assert events == set(plan.events) - {"screen_viewed"} - in_app
    assert set(big.types) == {"track", "identify", "group"}


def test_every_user_is_identified_and_grouped(big: Digest) -> None:
    history = big.history
    assert set(big.identified) == set(history.users)
    for uid, profile in history.users.items():
        assert big.grouped[uid] == profile.account_id
    assert len(history.accounts) == 100


def test_window_start_that_is_not_midnight() -> None:
    start = datetime(2026, 3, 8, 17, 45, 12, tzinfo=UTC)  # a Sunday, on a US DST change
    stamps = [_epoch(m["timestamp"]) for m in generate(users=30, accounts=4, days=10, seed=1, start=start)]
    assert stamps == sorted(stamps)
    assert start.timestamp() <= stamps[0]
    assert stamps[-1] < (start + timedelta(days=10)).timestamp()


@pytest.mark.parametrize(("users", "accounts", "days"), [(1, 1, 1), (3, 5, 1), (7, 2, 2), (30, 4, 8)])
def test_tiny_histories_stay_inside_their_window(users: int, accounts: int, days: int) -> None:
    start = datetime(2026, 10, 3, 13, 17)  # naive: taken as UTC
    history = build_history(users=users, accounts=accounts, days=days, seed=1, start=start)
    stamps = [_epoch(m["timestamp"]) for m in history.messages()]
    assert stamps == sorted(stamps)
    assert history.start.timestamp() <= stamps[0]
    assert stamps[-1] < history.end.timestamp()
    assert len(history.users) == users
    assert len(history.accounts) == min(users, accounts)


def test_rejects_empty_histories() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        build_history(users=0, start=START)


# --- accounts and traits ------------------------------------------------------------------------


def test_accounts_have_consistent_plans_and_a_handful_are_high_value(big: Digest) -> None:
    accounts = big.history.accounts.values()
    price = {"free": 0, "team": 20, "business": 45}
    for account in accounts:
        assert account.plan in price
        assert account.mrr == account.seats * price[account.plan]
        assert account.seats >= len(account.members) or account.plan == "free"
    high = [a for a in accounts if a.high_value]
    assert 3 <= len(high) <= 12
    sizes = sorted(len(a.members) for a in accounts)
    assert sizes[-1] >= 3 * sizes[len(sizes) // 2]  # skewed: a couple of big accounts


def test_a_high_value_account_mostly_declines_or_goes_dormant(either: Digest) -> None:
    (account,) = [a for a in either.history.accounts.values() if a.at_risk]
    assert account.mrr >= HIGH_VALUE_MRR
    personas = Counter(either.history.personas[uid] for uid in account.members)
    falling = personas[Persona.DECLINER] + personas[Persona.DORMANT]
    assert len(account.members) >= 5
    assert falling >= 0.6 * len(account.members)


def test_identify_traits_are_realistic() -> None:
    history = build_history(users=200, accounts=20, days=30, seed=11, start=START)
    zones: Counter[str] = Counter()
    for message in history.messages():
        if message["type"] != "identify" or "email" not in message["traits"]:
            continue
        traits = message["traits"]
        account = history.accounts[history.users[message["userId"]].account_id]
        number = int(message["userId"].removeprefix("user-"))
        # ...a few at SES's mailbox simulator, so the demo shows feedback (bounces, complaints)
        if simulated_address(number):
            assert traits["email"] == simulated_address(number)
            assert traits["email"].endswith("@simulator.amazonses.com")
            assert f"+{message['userId']}@" in traits["email"]
            continue
        assert traits["email"].startswith(message["userId"] + "@")
        assert traits["email"].endswith(".example")
        assert traits["consent"]["email"] is True
        assert set(traits["consent"]) == {"email", "push", "sms"}
        assert traits["plan"] in {"free", "team", "business"}
        assert account.created <= history.users[message["userId"]].signed_up
        zones[traits["timezone"]] += 1
    assert len(zones) >= 8
    assert zones.most_common(1)[0][1] < 0.5 * sum(zones.values())


def test_a_minority_opt_in_to_sms_with_a_phone_and_some_of_them_prefer_texts(big: Digest) -> None:
    # Given the first identify of every user of the big sample
    firsts: dict[str, dict[str, Any]] = {}
    for message in big.history.messages():
        if message["type"] == "identify" and "email" in message["traits"]:
            firsts.setdefault(message["userId"], message["traits"])
    texted = [t for t in firsts.values() if t["consent"]["sms"]]
    # Then a minority opted in to SMS, each with an E.164 phone number, and nobody else has one
    assert 0.1 * len(firsts) < len(texted) < 0.3 * len(firsts)
    assert all(str(t["phone"]).startswith("+1") and str(t["phone"])[1:].isdigit() for t in texted)
    assert not any("phone" in t for t in firsts.values() if not t["consent"]["sms"])
    # ...some of them chose texts as the way to reach them, and only people who opted in did
    preferring = [t for t in firsts.values() if t.get("preferred_channel") == "sms"]
    assert 0.25 * len(texted) < len(preferring) < 0.75 * len(texted)
    assert all(t["consent"]["sms"] and "phone" in t for t in preferring)


# --- personas -----------------------------------------------------------------------------------


def test_personas_in_sensible_proportions(big: Digest) -> None:
    counts = big.history.persona_counts()
    total = sum(counts.values())
    assert total == 1000
    for persona, share in PERSONA_SHARES.items():
        assert abs(counts[persona] / total - share) <= 0.04, (persona, counts[persona])


def test_activated_users_do_all_three_onboarding_steps_within_days(either: Digest) -> None:
    quick = 0
    activated = users_of(either, Persona.ACTIVATED)
    assert activated
    for uid in activated:
        firsts: dict[str, float] = {}
        for at, event in either.tracks[uid]:
            firsts.setdefault(event, at)
        assert set(ONBOARDING) <= set(firsts), uid
        quick += max(firsts[e] for e in ONBOARDING) - firsts["signed_up"] <= 7 * DAY
    assert quick >= 0.9 * len(activated)


def test_stalled_users_stop_at_their_step(either: Digest, plan: TrackingPlan) -> None:
    for persona, done, missing in (
        (Persona.STALLED_SETUP, set(), "setup_completed"),
        (Persona.STALLED_NO_PROJECT, {"setup_completed"}, "project_created"),
        (Persona.STALLED_NO_INVITE, {"setup_completed", "project_created"}, "teammate_invited"),
    ):
        assert users_of(either, persona)
        for uid in users_of(either, persona):
            events = {event for _, event in either.tracks[uid]}
            assert done <= events, (persona, uid)
            assert missing not in events, (persona, uid)
            if persona is Persona.STALLED_SETUP:
                assert events & plan.meaningful == {"signed_up"}


def test_power_users_go_deep_and_hit_premium_features(either: Digest, plan: TrackingPlan) -> None:
    assert users_of(either, Persona.POWER)
    for uid in users_of(either, Persona.POWER):
        events = Counter(event for _, event in either.tracks[uid])
        assert events["premium_feature_attempted"] >= 3, uid
        for needed in ("automation_created", "integration_connected", "report_exported", *ONBOARDING):
            assert events[needed] >= 1, (uid, needed)
        signed_up = either.history.users[uid].signed_up.timestamp()
        weeks = weekly(meaningful_sessions(either.tracks[uid], plan), *window(either))
        full = [n for monday, n, whole in weeks if whole and monday > signed_up]
        if full:
            assert sum(full) / len(full) >= 5, uid


def test_decliners_fall_below_two_sessions_for_two_weeks_after_being_habitual(
    either: Digest, plan: TrackingPlan
) -> None:
    decliners = users_of(either, Persona.DECLINER)
    assert decliners
    for uid in decliners:
        weeks = weekly(meaningful_sessions(either.tracks[uid], plan), *window(either))
        # Two whole weeks in a row under 2 sessions, after a week of 3 or more.
        found = any(
            low[2] and next_low[2] and low[1] < 2 and next_low[1] < 2
            and max((n for _, n, _ in weeks[:i]), default=0) >= 3
            for i, (low, next_low) in enumerate(itertools.pairwise(weeks))
        )  # fmt: skip
        assert found, (uid, weeks)


def test_habitual_users_never_have_two_low_full_weeks(either: Digest, plan: TrackingPlan) -> None:
    """Activated and power users must not look like decliners (the decline rule would fire)."""
    for uid in users_of(either, Persona.ACTIVATED) + users_of(either, Persona.POWER):
        signed_up = either.history.users[uid].signed_up.timestamp()
        sessions = meaningful_sessions(either.tracks[uid], plan)
        weeks = [n for monday, n, whole in weekly(sessions, *window(either)) if whole and monday > signed_up]
        assert not any(a < 2 and b < 2 for a, b in itertools.pairwise(weeks)), (uid, weeks)


def test_dormant_users_are_silent_for_30_days_at_the_end(big: Digest, plan: TrackingPlan) -> None:
    end = window(big)[1]
    assert users_of(big, Persona.DORMANT)
    for uid in users_of(big, Persona.DORMANT):
        assert end - big.last_message[uid] >= 30 * DAY, uid
        assert len(meaningful_sessions(big.tracks[uid], plan)) >= 2, uid  # they were active first


def test_sessions_follow_working_hours_and_weekdays(big: Digest) -> None:
    weekday: Counter[bool] = Counter()
    for _uid, tracks in big.tracks.items():
        for at, event in tracks:
            if event == "login":
                weekday[datetime.fromtimestamp(at, UTC).weekday() < 5] += 1
    assert weekday[True] > 4 * weekday[False]


# --- the committed sample, NDJSON files and the command -----------------------------------------


def test_short_window_redistributes_dormant_share(small: Digest) -> None:
    counts = small.history.persona_counts()
    assert counts[Persona.DORMANT] == 0
    assert counts[Persona.STALLED_SETUP] <= 0.25 * sum(counts.values())  # not dumped on one persona


def test_committed_small_sample_is_current() -> None:
    path = ROOT / "samplefiles" / "sample-small.ndjson"
    expected = small_history().messages()
    for line, (got, want) in enumerate(itertools.zip_longest(read_ndjson(path), expected), start=1):
        assert got == want, (
            f"{path}:{line} differs from the generator; regenerate with `nudge sample --users 60 --accounts 6 "
            "--days 30 --seed 7 --start 2026-10-01T00:00:00Z --out samplefiles/sample-small.ndjson`"
        )


def test_ndjson_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    messages = list(generate(users=5, accounts=2, days=3, seed=2, start=START))
    for name in ("out.ndjson", "out.ndjson.gz"):
        assert write_ndjson(tmp_path / name, messages) == len(messages)
        assert list(read_ndjson(tmp_path / name)) == messages
    with gzip.open(tmp_path / "out.ndjson.gz", "rt") as stream:
        assert json.loads(stream.readline()) == messages[0]


def test_ndjson_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text('{"type": "track"}\n\n{"type": \n[1, 2]\n')
    with pytest.raises(NdjsonError, match=r"bad\.ndjson:3: invalid JSON"):
        list(read_ndjson(path))
    path.write_text('{"type": "track"}\n[1, 2]\n')
    with pytest.raises(NdjsonError, match=r"bad\.ndjson:2: expected a JSON object, got an array"):
        list(read_ndjson(path))


def test_write_failure_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> Any:
        yield {"type": "track"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_ndjson(tmp_path / "x.ndjson", broken())
    assert list(tmp_path.iterdir()) == []


def cli_main(argv: list[str]) -> int:
    """`nudge` with only the sample command registered (the other areas are tested on their own)."""
    parser = argparse.ArgumentParser(prog="nudge")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


def test_sample_command_writes_file_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.ndjson"
    args = ["sample", "--users", "20", "--accounts", "3", "--days", "14", "--seed", "5"]
    assert cli_main([*args, "--start", "2026-07-01T00:00:00Z", "--out", str(out)]) == 0
    messages = list(read_ndjson(out))
    assert messages == list(generate(users=20, accounts=3, days=14, seed=5, start=START))
    err = capsys.readouterr().err
    assert f"{len(messages):,} messages" in err
    assert "20 users" in err
    assert "3 accounts" in err


def test_sample_command_to_stdout_with_default_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sample", "--users", "3", "--accounts", "1", "--days", "2", "--out", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    stamps = [_epoch(json.loads(line)["timestamp"]) for line in lines]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert lines
    assert (today - timedelta(days=2)).timestamp() <= stamps[0]
    assert stamps[-1] < today.timestamp()


def test_sample_command_rejects_a_bad_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["sample", "--start", "yesterday", "--out", "-"])
    assert "--start" in capsys.readouterr().err
