"""What CloudWatch is told: the EMF lines the real dispatch and email handlers print (with in-memory
ports), and the dashboard and alarms in template.yaml that read them."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import nudge.entrypoints.decisions as decision_handler
import nudge.entrypoints.deliveries as delivery_handler
from nudge.adapters.memory import (
    MemoryEmailSender,
    MemoryLedger,
    MemoryRechecks,
    MemoryRouter,
    MemoryUsageStore,
)
from nudge.bootstrap.deliver import DeliverService
from nudge.bootstrap.dispatch import DispatchService
from nudge.model.decisions import Decision
from nudge.model.errors import SendFailed, SendRejected
from nudge.model.queue import DecisionBatch, Delivery
from nudge.model.state import Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.observability import MetricCounts, metrics
from nudge.services.deliver import Channels, DeliverPorts
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.settings import Settings
from nudge.tools.local.template import load_template
from tests.shipped import UNHELD, load_handler

REPO = Path(__file__).resolve().parents[3]
NOON = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York: no quiet hours


class Context:
    function_name = "unit"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:unit"
    aws_request_id = "req-unit"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# ---------------------------------------------------------------------------- helpers


def emf(printed: str) -> list[dict[str, Any]]:
    """The EMF documents among the printed lines."""
    lines = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            lines.append(json.loads(line))
    return lines


def lines_of(documents: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        doc
        for doc in documents
        if any(m["Name"] == name for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"])
    ]


def dimension_keys(doc: dict[str, Any]) -> list[str]:
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    [keys] = directive["Dimensions"]
    return list(keys)


def total(doc: dict[str, Any], name: str) -> float:
    value = doc[name]
    return float(sum(value) if isinstance(value, list) else value)


def by(documents: list[dict[str, Any]], name: str, dimension: str) -> dict[str, float]:
    """`name`'s value per value of `dimension`, each from exactly one line."""
    found = lines_of(documents, name)
    values = [doc[dimension] for doc in found]
    assert len(values) == len(set(values)), f"{name}: more than one line per {dimension}: {values}"
    return {doc[dimension]: total(doc, name) for doc in found}


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def load(path: Path) -> ModuleType:
    return load_handler(path, f"{path.parent.name}_app_{uuid.uuid4().hex[:8]}")


def a_user(usage: MemoryUsageStore, user: str, **traits: Any) -> None:
    base = {
        "email": f"{user}@example.com",
        "first_name": "Ada",
        "timezone": "America/New_York",
        "consent": {"email": True, "push": True, "sms": True},
    }
    stamped = {k: Stamped(v=v, at=NOON, mid="m") for k, v in {**base, **traits}.items() if v is not None}
    usage.users[user] = Versioned(UserState(user_id=user, traits=stamped), 1)


def email_decision(user: str, decision_id: str) -> Decision:
    spec = UNHELD.trigger_by_id["finish_setup"].spec
    return Decision(
        decision_id=decision_id,
        user=user,
        account=None,
        rule="finish_setup",
        kind=spec.kind,
        action="email",
        channel="email",
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts={},
        decided_at=NOON,
    )


def batch_of(decision: Decision) -> str:
    return DecisionBatch(user=decision.user, decided_at=NOON, decisions=[decision]).model_dump_json()


# ---------------------------------------------------------------------------- dashboard


def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def dashboard() -> dict[str, Any]:
    """The dashboard body with every ${...} replaced by the name it stands for."""
    body = template()["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: m.group(1), body))
    return parsed


def searches() -> dict[str, set[str]]:
    """Metric name -> the dimension keys of the dashboard's SEARCH for it."""
    found: dict[str, set[str]] = {}
    for widget in dashboard()["widgets"]:
        for row in widget["properties"].get("metrics", []):
            # A math or search expression is a row of one object: [{"expression": ..., "id": ...}].
            if isinstance(row[0], dict) and "expression" in row[0]:
                match = re.search(r"\{Nudge,([^}]+)\} MetricName=\"(\w+)\"'", row[0]["expression"])
                if match:
                    found[match.group(2)] = set(match.group(1).split(","))
    return found


def test_counts_go_out_once_per_metric_and_dimension_value_summed_over_the_invocation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given counts added record by record during one invocation
    counts = MetricCounts(metrics)
    for channel in ["email", "push", "email", "email"]:
        counts.add("Sends", "channel", channel)
    counts.add("Suppressed", "reason", "no_address", 0)
    # When the invocation ends
    counts.flush()
    # Then one line per channel, each carrying the sum, and nothing for a zero
    documents = emf(capsys.readouterr().out)
    assert by(documents, "Sends", "channel") == {"email": 3.0, "push": 1.0}
    assert lines_of(documents, "Suppressed") == []
    assert sorted(dimension_keys(lines_of(documents, "Sends")[0])) == ["channel", "service"]


def test_send_outcome_unknown_has_no_dimension_so_one_alarm_covers_every_channel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given two sends whose outcome is unknown in one invocation
    counts = MetricCounts(metrics)
    counts.add("SendOutcomeUnknown")
    counts.add("SendOutcomeUnknown")
    # When flushed
    counts.flush()
    # Then one line, with no dimension at all (the alarm names none)
    [doc] = lines_of(emf(capsys.readouterr().out), "SendOutcomeUnknown")
    assert dimension_keys(doc) == []
    assert "service" not in doc
    assert total(doc, "SendOutcomeUnknown") == 2.0
    alarm = template()["Resources"]["SendOutcomeUnknownAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions")) == (
        "Nudge",
        "SendOutcomeUnknown",
        None,
    )


def test_the_dispatch_handler_counts_decisions_by_outcome_and_suppressions_by_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the real dispatch handler on in-memory ports, a user with an address and one without
    usage = MemoryUsageStore()
    a_user(usage, "obs-ada")
    a_user(usage, "obs-bob", email=None)
    ports = DispatchPorts(
        ledger=MemoryLedger(), usage=usage, router=MemoryRouter(), rechecks=MemoryRechecks()
    )
    monkeypatch.setattr(decision_handler, "wire_dispatch", lambda: DispatchService(Settings(), UNHELD, ports))
    app = load(REPO / "functions/dispatch/app.py")
    capsys.readouterr()
    ada = batch_of(email_decision("obs-ada", "obs-d1"))
    bob = batch_of(email_decision("obs-bob", "obs-d2"))
    # When one invocation gets Ada's batch twice and Bob's once
    assert app.handler(sqs_event([ada, ada, bob]), Context()) == {"batchItemFailures": []}
    # Then one line per outcome and per reason, with the invocation's totals
    documents = emf(capsys.readouterr().out)
    assert by(documents, "Decisions", "outcome") == {"send": 1.0, "duplicate": 1.0, "suppressed": 1.0}
    assert by(documents, "Suppressed", "reason") == {"no_address": 1.0}
    # ...under the dimensions the dashboard searches for
    wanted = searches()
    for name in ("Decisions", "Suppressed"):
        for doc in lines_of(documents, name):
            assert set(dimension_keys(doc)) == wanted[name]


def test_the_email_handler_counts_sends_and_failures_by_channel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three routed emails: SES refuses the first, drops the connection on the second, and
    # takes the third; the real email handler on in-memory ports
    usage = MemoryUsageStore()
    ledger = MemoryLedger()
    router = MemoryRouter()
    users = ["obs-rejected", "obs-unknown", "obs-sent"]
    for user in users:
        a_user(usage, user)
        dispatch(
            DecisionBatch(user=user, decided_at=NOON, decisions=[email_decision(user, f"obs-{user}")]),
            UNHELD,
            DispatchPorts(ledger=ledger, usage=usage, router=router, rechecks=MemoryRechecks()),
            NOON,
        )
    sender = MemoryEmailSender(fail_with=[SendRejected("MessageRejected"), SendFailed("dropped")])
    ports = DeliverPorts(
        ledger=ledger,
        usage=usage,
        channels=Channels(email=sender),
        unsubscribe_secrets=(b"s" * 32,),
        unsubscribe_url="https://api.example/v1/unsubscribe",
    )
    monkeypatch.setattr(
        delivery_handler, "wire_deliver", lambda channel: DeliverService(Settings(), UNHELD, ports)
    )
    app = load(REPO / "functions/email/app.py")
    capsys.readouterr()
    deliveries: list[Delivery] = router.routed
    # When one invocation delivers them
    event = sqs_event([d.model_dump_json() for d in deliveries])
    assert app.handler(event, Context()) == {"batchItemFailures": []}
    # Then Sends and SendFailures by channel, one line each, and the unknown outcome on its own
    documents = emf(capsys.readouterr().out)
    assert by(documents, "Sends", "channel") == {"email": 1.0}
    assert by(documents, "SendFailures", "channel") == {"email": 2.0}
    [unknown] = lines_of(documents, "SendOutcomeUnknown")
    assert total(unknown, "SendOutcomeUnknown") == 1.0
    wanted = searches()
    for name in ("Sends", "SendFailures"):
        for doc in lines_of(documents, name):
            assert set(dimension_keys(doc)) == wanted[name]
    assert len(sender.sent) == 1


def test_a_delivery_found_claimed_by_a_crashed_function_raises_the_unknown_outcome_alarm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a routed email whose entry a function claimed, then died (before or after sending)
    usage, ledger, router = MemoryUsageStore(), MemoryLedger(), MemoryRouter()
    a_user(usage, "obs-crashed")
    dispatch(
        DecisionBatch(
            user="obs-crashed", decided_at=NOON, decisions=[email_decision("obs-crashed", "obs-c")]
        ),
        UNHELD,
        DispatchPorts(ledger=ledger, usage=usage, router=router, rechecks=MemoryRechecks()),
        NOON,
    )
    [delivery] = router.routed
    assert ledger.move(delivery.subject, delivery.decision_id, ["queued"], "sending", NOON) is not None
    sender = MemoryEmailSender()
    ports = DeliverPorts(
        ledger=ledger,
        usage=usage,
        channels=Channels(email=sender),
        unsubscribe_secrets=(b"s" * 32,),
        unsubscribe_url="https://api.example/v1/unsubscribe",
    )
    monkeypatch.setattr(
        delivery_handler, "wire_deliver", lambda channel: DeliverService(Settings(), UNHELD, ports)
    )
    app = load(REPO / "functions/email/app.py")
    capsys.readouterr()
    # When the queue redelivers it
    assert app.handler(sqs_event([delivery.model_dump_json()]), Context()) == {"batchItemFailures": []}
    # Then nothing is sent, and the alarm's metric counts it
    assert sender.sent == []
    [unknown] = lines_of(emf(capsys.readouterr().out), "SendOutcomeUnknown")
    assert total(unknown, "SendOutcomeUnknown") == 1.0


# ---------------------------------------------------------------------------- template


def functions() -> list[str]:
    resources = template()["Resources"]
    return [k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"]


def widget(title: str) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = dashboard()["widgets"]
    [found] = [w for w in widgets if w["properties"].get("title", "").startswith(title)]
    return found


def graphed(title: str) -> set[str]:
    """The dimension values a widget's plain metric rows name."""
    values: set[str] = set()
    for row in widget(title)["properties"]["metrics"]:
        values.update(v for v in row[2:] if isinstance(v, str))
    return values


def test_the_dashboard_graphs_every_function_and_every_dead_letter_queue() -> None:
    # Given the template's functions and its dead-letter and failure queues
    resources = template()["Resources"]
    queues = [
        k
        for k, v in resources.items()
        if v["Type"] == "AWS::SQS::Queue" and (k.endswith("DLQ") or k.endswith("FailureQueue"))
    ]
    # Then each function has errors, throttles and duration, each queue its depth
    for title in ("Lambda errors", "Lambda throttles", "Lambda duration"):
        assert graphed(title) >= set(functions()), title
    assert graphed("Dead-letter") >= {f"{q}.QueueName" for q in queues}
    assert "EvaluateFunction" in graphed("Evaluate: stream iterator age")
    # ...every row of every graph is an array (a metric, or one expression object), as the
    # dashboard body requires
    for item in dashboard()["widgets"]:
        for row in item["properties"].get("metrics", []):
            assert isinstance(row, list), row
    # ...every ${...} it names is a resource of the template, and the segments, outcomes,
    # reasons and channels are searched for
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in re.findall(r"\$\{([^}.:]+)[^}]*\}", body):
        assert name in resources or name == "AWS", name
    assert searches() == {
        "SegmentEntered": {"segment", "service"},
        "SegmentExited": {"segment", "service"},
        "Decisions": {"outcome", "service"},
        "Suppressed": {"reason", "service"},
        "Sends": {"channel", "service"},
        "SendFailures": {"channel", "service"},
    }
    assert "OperationsDashboard" in json.dumps(template()["Outputs"]["DashboardUrl"])


def alarms() -> list[dict[str, Any]]:
    resources = template()["Resources"]
    return [v["Properties"] for v in resources.values() if v["Type"] == "AWS::CloudWatch::Alarm"]


def alarmed_functions(metric: str) -> Counter[str]:
    """Functions with an alarm on `metric`, plain or inside metric math."""
    found: Counter[str] = Counter()
    for alarm in alarms():
        stats = [alarm] + [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
        for stat in stats:
            if stat.get("Namespace") == "AWS/Lambda" and stat.get("MetricName") == metric:
                for dimension in stat["Dimensions"]:
                    found[dimension["Value"]["Ref"]] += 1
    return found


def test_every_function_has_a_throttles_alarm_and_the_consumers_an_error_rate_alarm() -> None:
    # Then each function is alarmed on throttles
    assert set(alarmed_functions("Throttles")) == set(functions())
    # ...and every function but ingest and the front door (alarmed on errors, and API 5xx) on its
    # error rate, which divides its Errors by its Invocations above a minimum of invocations
    rated = {
        "DispatchFunction",
        "EmailFunction",
        "NotifyFunction",
        "EscalateFunction",
        "EvaluateFunction",
        "SweepFunction",
        "WebhookFunction",
        "ChangesFunction",
        "FeedbackFunction",
        "IngestQueueFunction",
        "RollupFunction",
    }
    assert set(alarmed_functions("Invocations")) == rated
    for alarm in alarms():
        if "Metrics" in alarm and any(q["Id"] == "invocations" for q in alarm["Metrics"]):
            [expression] = [q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData")]
            assert re.fullmatch(
                r"IF\(invocations >= \d+, 100 \* FILL\(errors, 0\) / invocations, 0\)", expression
            )
            assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (5, "GreaterThanThreshold")
    # ...and every alarm notifies a topic that exists: the operator's, or the stack's own
    for alarm in alarms():
        assert alarm["AlarmActions"] == [
            {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}
        ]
    assert template()["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
