"""`nudge escalations` on DynamoDB (moto, tables from template.yaml), and over HTTP against the local
stack: an escalation opened by dispatch is listed with its account's context, marked handled, and
marketing to the account's users resumes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.rollup_stream import RollupPump
from nudge import clock
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryRechecks, MemoryRouter
from nudge.model.decisions import Decision
from nudge.model.messages import Group, Identify, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.rulebook.plan import load_plan
from nudge.services.dispatch import DispatchPorts, DispatchResult, dispatch
from nudge.services.ingest import ingest
from nudge.settings import Settings, get_settings
from nudge.tools.cli import main
from nudge.tools.local.aws import create_usage_resources
from nudge.tools.local.http import LocalApiServer
from nudge.tools.local.simulated_clock import SimulatedClock
from nudge.tools.local.stack import LocalStack
from tests.shipped import ONE_SHOT_DIR, UNHELD

REPO = Path(__file__).resolve().parents[2]
PLAN = load_plan(ONE_SHOT_DIR)
RULES = UNHELD  # no holdouts: whether a send goes out must not depend on the user id's hash
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # noon in New York: outside quiet hours
NEXT_STEP = RULES.trigger_by_id["at_risk_account"].spec.next_step


@dataclass
class Tables:
    settings: Settings
    ledger: DynamoLedger
    usage: DynamoUsageStore

    def ports(self) -> DispatchPorts:
        return DispatchPorts(
            ledger=self.ledger, usage=self.usage, router=MemoryRouter(), rechecks=MemoryRechecks()
        )


@pytest.fixture
def tables(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[Tables]:
    """Both tables in moto, named (for the CLI) by the environment as in AWS; the clock at NOW."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/cs-{suffix}/keys",
    )
    client = boto3.client("dynamodb")
    create_usage_resources(client, boto3.client("ssm"), template_path, settings, ["wk"])
    monkeypatch.setenv("NUDGE_USAGE_TABLE", settings.usage_table)
    monkeypatch.setenv("NUDGE_LEDGER_TABLE", settings.ledger_table)
    monkeypatch.setenv("NUDGE_RULES_DIR", str(ONE_SHOT_DIR))
    get_settings.cache_clear()
    use_clock(lambda: NOW + timedelta(hours=3))
    try:
        yield Tables(
            settings,
            DynamoLedger(client, settings.ledger_table),
            DynamoUsageStore(client, settings.usage_table, settings.rollup_shards),
        )
    finally:
        get_settings.cache_clear()


def an_account_with_a_user(usage: DynamoUsageStore, account: str, user: str) -> None:
    messages: list[Message] = [
        Track(userId=user, event="signed_up", timestamp=NOW, messageId=f"{user}-s"),
        Identify(
            userId=user,
            traits={"email": f"{user}@example.com", "first_name": "Ada", "timezone": "America/New_York"},
            timestamp=NOW,
            messageId=f"{user}-i",
        ),
        Group(
            userId=user,
            groupId=account,
            traits={"name": "Initech", "plan": "business", "mrr": 9000, "seats": 40, "cs_owner": "Sam"},
            timestamp=NOW,
            messageId=f"{user}-g",
        ),
    ]
    assert not ingest(list(enumerate(messages)), PLAN, usage, NOW).errors
    # The account's rollup is applied off the user's write, by the rollup function from the stream.
    RollupPump(usage.client, boto3.client("dynamodbstreams"), usage.table, usage.shards).pump()


def decision(rule: str, user: str, account: str, decision_id: str, at: datetime = NOW) -> Decision:
    spec = RULES.trigger_by_id[rule].spec
    return Decision(
        decision_id=decision_id,
        user=user,
        account=account,
        rule=rule,
        kind="escalation" if spec.action == "escalate" else spec.kind,
        action=spec.action,
        channel={"escalate": "cs"}.get(spec.action, spec.action),
        template=spec.template,
        priority=spec.priority,
        reason=spec.description,
        facts={"lifecycle segment": "declining"} if spec.action == "escalate" else {},
        decided_at=at,
    )


def outcomes(result: DispatchResult) -> list[tuple[str, str, str]]:
    return [(v.decision.rule, v.outcome, v.reason) for v in result.verdicts]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def ids() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"acct-{suffix}", f"user-{suffix}"


def test_an_escalation_from_dispatch_is_listed_handled_and_marketing_to_the_account_resumes(
    tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an account escalated by dispatch, which held back a marketing email to its user
    account, user = ids()
    an_account_with_a_user(tables.usage, account, user)
    first = dispatch(
        DecisionBatch(
            user=user,
            account=account,
            decided_at=NOW,
            decisions=[
                decision("at_risk_account", user, account, f"esc-{account}"),
                decision("finish_setup", user, account, f"mail-1-{user}"),
            ],
        ),
        RULES,
        tables.ports(),
        NOW,
    )
    assert outcomes(first) == [
        ("at_risk_account", "send", ""),
        ("finish_setup", "suppressed", "account_escalated"),
    ]

    # When CS lists the open escalations as JSON
    code, out, _ = cli(capsys, "escalations", "--json")

    # Then the account is there with its context, and the user's address is not
    assert code == 0
    view = json.loads(out)
    assert view["count"] == 1
    row = view["escalations"][0]
    assert {k: row[k] for k in ("account_id", "account_name", "plan", "mrr", "seats", "cs_owner")} == {
        "account_id": account,
        "account_name": "Initech",
        "plan": "business",
        "mrr": 9000.0,
        "seats": 40,
        "cs_owner": "Sam",
    }
    assert (row["band"], row["rule"], row["next_step"], row["status"]) == (
        "high",
        "at_risk_account",
        NEXT_STEP,
        "open",
    )
    assert row["facts"] == {"lifecycle segment": "declining"}
    assert row["age_seconds"] == 3 * 3600
    assert [w["active_users"] for w in row["usage"]] == [0, 0, 0, 1]  # signed up this week
    assert "@example.com" not in out
    assert user not in out

    # ... and the table shows the same
    code, table, _ = cli(capsys, "escalations", "list")
    assert code == 0
    assert all(text in table for text in ("Initech", account, "Sam", "at_risk_account", "3h 0m ago"))

    # When an agent marks it handled
    code, out, _ = cli(capsys, "escalations", "handle", account, "--by", "Sam", "--note", "Called the owner")

    # Then it says what was done, it is no longer open, and --all shows who handled it
    assert code == 0
    assert "Marked handled: Initech" in out
    assert "by Sam" in out
    assert "Called the owner" in out
    assert json.loads(cli(capsys, "escalations", "--json")[1])["count"] == 0
    closed = json.loads(cli(capsys, "escalations", "--all", "--json")[1])["escalations"]
    assert [(r["account_id"], r["status"], r["handled_by"], r["note"]) for r in closed] == [
        (account, "handled", "Sam", "Called the owner")
    ]
    stored = tables.ledger.escalation_of(account)
    assert stored is not None
    assert not stored[0].value.is_open(NOW + timedelta(hours=3), RULES.guardrails.spec.escalations.open_for)

    # ... and the next marketing email to the account's user is sent, not held back
    later = NOW + timedelta(hours=4)
    after = dispatch(
        DecisionBatch(
            user=user,
            account=account,
            decided_at=later,
            decisions=[decision("finish_setup", user, account, f"mail-2-{user}", later)],
        ),
        RULES,
        tables.ports(),
        later,
    )
    assert outcomes(after) == [("finish_setup", "send", "")]

    # ... and marking it handled again is refused, saying by whom it was
    code, out, err = cli(capsys, "escalations", "handle", account, "--by", "Kim")
    assert code == 1
    assert "no open escalation" in err
    assert "handled by Sam" in err


def test_handling_an_account_that_was_never_escalated_exits_1_and_says_so(
    tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    account, _ = ids()
    code, out, err = cli(capsys, "escalations", "handle", account, "--by", "Sam")
    assert code == 1
    assert out == ""
    assert f"account {account} has no escalation on record" in err


def test_tables_that_do_not_exist_are_reported_in_one_line(
    tables: Tables, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUDGE_LEDGER_TABLE", "no-such-ledger")
    code, out, err = cli(capsys, "escalations")
    assert code == 2
    assert out == ""
    assert "cannot read tables no-such-ledger and" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- --local


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[tuple[LocalStack, str]]:
    """`nudge serve` on a free port; its functions run in one container whose output (logs,
    metrics) goes to a file, so stdout holds only what the CLI printed."""
    stack = LocalStack(
        clock=SimulatedClock(NOW), containers=1, log_level="WARNING", function_logs=tmp_path / "functions.log"
    )
    with LocalApiServer(stack) as server, stack:  # the server first: links point at its port
        yield stack, server.base_url


def test_the_local_stack_serves_the_same_view_and_takes_the_handled_mark(
    local_api: tuple[LocalStack, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an account escalated on the local stack's tables
    stack, url = local_api
    account, user = ids()
    an_account_with_a_user(stack.store, account, user)
    ports = DispatchPorts(
        ledger=stack.ledger, usage=stack.store, router=MemoryRouter(), rechecks=MemoryRechecks()
    )
    opened = dispatch(
        DecisionBatch(
            user=user,
            account=account,
            decided_at=NOW,
            decisions=[decision("at_risk_account", user, account, f"esc-{account}")],
        ),
        RULES,
        ports,
        NOW,
    )
    assert outcomes(opened) == [("at_risk_account", "send", "")]

    # When the CLI reads it through `nudge serve`'s routes
    code, out, _ = cli(capsys, "escalations", "--local", url, "--json")

    # Then it is the same view
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)["escalations"]
    assert [(r["account_id"], r["account_name"], r["cs_owner"], r["status"]) for r in rows] == [
        (account, "Initech", "Sam", "open")
    ]

    # When an agent marks it handled through the stack, then it is, and a second time is refused
    code, out, _ = cli(capsys, "escalations", "handle", account, "--by", "Sam", "--local", url)
    assert code == 0
    assert "Marked handled: Initech" in out
    assert json.loads(cli(capsys, "escalations", "--local", url, "--json")[1])["count"] == 0
    code, _, err = cli(capsys, "escalations", "handle", account, "--by", "Sam", "--local", url)
    assert code == 1
    assert "handled by Sam" in err
