"""The real dispatch, email and escalate handlers against moto: tables and queues from template.yaml,
SQS events in the shape Lambda delivers them, every message delivered twice."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from nudge import clock
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.adapters.memory import MemoryRechecks, MemoryRouter
from nudge.domain.suppression import address_key
from nudge.model.decisions import Decision
from nudge.model.messages import Group, Identify, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.model.suppression import Suppression
from nudge.rulebook.guardrails import Guardrails, GuardrailsFile
from nudge.rulebook.plan import load_plan
from nudge.services.dispatch import DispatchPorts, DispatchResult, dispatch
from nudge.services.ingest import ingest
from nudge.settings import Settings, get_settings
from nudge.tools.local.aws import LockedMotoServer, create_queues, create_usage_resources
from tests.shipped import ONE_SHOT_DIR, UNHELD, load_handler

REPO = Path(__file__).resolve().parents[2]
PLAN = load_plan(ONE_SHOT_DIR)
RULES = UNHELD  # the shipped rules without holdouts (this file's ids must not be held out)
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # noon in New York: outside quiet hours
REGION = "us-east-1"


class Context:
    function_name = "dispatch"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:dispatch"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _load(path: Path, name: str) -> ModuleType:
    return load_handler(path, name)


@dataclass
class Pipeline:
    settings: Settings
    queues: dict[str, str]
    dispatch: ModuleType
    email: ModuleType
    escalate: ModuleType
    ledger: DynamoLedger

    def take(self, queue: str) -> dict[str, Any]:
        """Everything on `queue` as one Lambda SQS event (and the messages leave the queue)."""
        sqs = boto3.client("sqs")
        records: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queues[queue], MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return {"Records": records}
            for m in got:
                records.append(
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                        "messageAttributes": {},
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:{queue}",
                        "awsRegion": REGION,
                    }
                )
                sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=m["ReceiptHandle"])

    def publish(self, batch: DecisionBatch) -> None:
        boto3.client("sqs").send_message(
            QueueUrl=self.queues["DecisionQueue"], MessageBody=batch.model_dump_json()
        )


def twice(event: dict[str, Any]) -> dict[str, Any]:
    """At-least-once delivery at its worst: every record twice in one batch."""
    return {"Records": [r for r in event["Records"] for _ in range(2)]}


@pytest.fixture
def pipeline(
    aws: None, template_path: Path, monkeypatch: pytest.MonkeyPatch, use_clock: Callable[[clock.Source], None]
) -> Iterator[Pipeline]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/it-{suffix}/keys",
        unsubscribe_secret_param=f"/nudge/it-{suffix}/unsubscribe-secret",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/it-{suffix}/suppression-secret",
    )
    create_usage_resources(boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, ["wk"])
    queues = create_queues(boto3.client("sqs"), template_path, f"it-{suffix}")
    for secret in (settings.unsubscribe_secret_param, settings.suppression_secret_param):
        boto3.client("ssm").put_parameter(Name=secret, Value="s" * 32, Type="SecureString", Overwrite=True)
    boto3.client("ses").verify_email_identity(EmailAddress="hello@acme.example")
    topic = boto3.client("sns").create_topic(Name=f"cs-{suffix}")["TopicArn"]
    env = {
        "NUDGE_USAGE_TABLE": settings.usage_table,
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_RULES_DIR": str(ONE_SHOT_DIR),
        "NUDGE_EMAIL_QUEUE_URL": queues["EmailQueue"],
        "NUDGE_NOTIFY_QUEUE_URL": queues["NotifyQueue"],
        "NUDGE_ESCALATION_QUEUE_URL": queues["EscalationQueue"],
        "NUDGE_CS_QUEUE_URL": queues["CsQueue"],
        "NUDGE_CS_TOPIC_ARN": topic,
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": settings.unsubscribe_secret_param,
        "NUDGE_UNSUBSCRIBE_URL": "https://api.example/v1/unsubscribe",
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    use_clock(lambda: NOW)
    try:
        yield Pipeline(
            settings=settings,
            queues=queues,
            dispatch=_load(REPO / "functions/dispatch/app.py", f"dispatch_app_{suffix}"),
            email=_load(REPO / "functions/email/app.py", f"email_app_{suffix}"),
            escalate=_load(REPO / "functions/escalate/app.py", f"escalate_app_{suffix}"),
            ledger=DynamoLedger(boto3.client("dynamodb"), settings.ledger_table),
        )
    finally:
        get_settings.cache_clear()


def a_user(settings: Settings, user: str, account: str) -> None:
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
            traits={"name": "Initech", "mrr": 9000, "seats": 40, "cs_owner": "Sam"},
            timestamp=NOW,
            messageId=f"{user}-g",
        ),
    ]
    store = DynamoUsageStore(boto3.client("dynamodb"), settings.usage_table, settings.rollup_shards)
    assert not ingest(list(enumerate(messages)), PLAN, store, NOW).errors


def decision(rule: str, action: str, channel: str, user: str, decision_id: str, template: str) -> Decision:
    return Decision(
        decision_id=decision_id,
        user=user,
        account="acct-1",
        rule=rule,
        kind="escalation" if action == "escalate" else "onboarding",
        action=action,
        channel=channel,
        template=template,
        priority=90 if action == "escalate" else 60,
        reason="test",
        facts={"days since signup": 2},
        decided_at=NOW,
    )


def sent_emails() -> list[Any]:
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def test_a_decision_delivered_twice_through_dispatch_and_email_is_sent_once(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a user, and one evaluation's finish_setup email on the decision queue
    a_user(pipeline.settings, "ada", "acct-1")
    pipeline.publish(
        DecisionBatch(
            user="ada",
            account="acct-1",
            decided_at=NOW,
            decisions=[decision("finish_setup", "email", "email", "ada", "d-email-1", "finish_setup")],
        )
    )
    caplog.set_level("INFO")
    before = len(sent_emails())
    # When dispatch gets the batch twice, and the email function gets every delivery twice
    answer = pipeline.dispatch.handler(twice(pipeline.take("DecisionQueue")), Context())
    assert answer == {"batchItemFailures": []}
    deliveries = pipeline.take("EmailQueue")
    assert len(deliveries["Records"]) == 2  # routed by both copies: the email function dedupes
    assert pipeline.email.handler(twice(deliveries), Context()) == {"batchItemFailures": []}
    # Then exactly one email left SES, to the user, with a one-click unsubscribe header
    sent = sent_emails()[before:]
    assert len(sent) == 1
    raw = sent[0].raw_data
    assert "ada@example.com" in sent[0].destinations[0]
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    assert "https://api.example/v1/unsubscribe?token=" in raw
    entry = pipeline.ledger.get("USER#ada", "d-email-1")
    assert entry is not None
    assert (entry.outcome, entry.status) == ("send", "sent")
    assert entry.provider_id
    # ...and the functions' logs (what CloudWatch would keep) never held the address
    printed = capsys.readouterr()
    logged = caplog.text + printed.out + printed.err + repr([r.__dict__ for r in caplog.records])
    assert "d-email-1" in logged
    assert "ada@example.com" not in logged


def test_an_escalation_raised_by_two_users_opens_one_case_and_holds_back_marketing(
    pipeline: Pipeline,
) -> None:
    # Given two users of one account whose evaluations both escalate it (same decision id), and a
    # marketing email decided with the first
    a_user(pipeline.settings, "ann", "acct-1")
    a_user(pipeline.settings, "bob", "acct-1")
    esc = "d-esc-acct-1"
    for user in ("ann", "bob"):
        pipeline.publish(
            DecisionBatch(
                user=user,
                account="acct-1",
                decided_at=NOW,
                decisions=[
                    decision("at_risk_account", "escalate", "cs", user, esc, "cs_escalation"),
                    decision("finish_setup", "email", "email", user, f"d-mail-{user}", "finish_setup"),
                ],
            )
        )
    # When dispatch and the escalate function each get everything twice
    assert pipeline.dispatch.handler(twice(pipeline.take("DecisionQueue")), Context()) == {
        "batchItemFailures": []
    }
    assert pipeline.escalate.handler(twice(pipeline.take("EscalationQueue")), Context()) == {
        "batchItemFailures": []
    }
    # Then CS has one case, with the account's context, and no marketing email was routed
    cases = boto3.client("sqs").receive_message(QueueUrl=pipeline.queues["CsQueue"], MaxNumberOfMessages=10)
    bodies = [m["Body"] for m in cases.get("Messages", [])]
    assert len(bodies) == 1
    assert '"account_name":"Initech"' in bodies[0]
    assert '"cs_owner":"Sam"' in bodies[0]
    assert pipeline.take("EmailQueue")["Records"] == []
    for user in ("ann", "bob"):
        entry = pipeline.ledger.get(f"USER#{user}", f"d-mail-{user}")
        assert entry is not None
        assert (entry.outcome, entry.reason) == ("suppressed", "account_escalated")


def test_eight_concurrent_dispatches_for_one_user_on_dynamodb_never_break_a_cap(
    moto_server: LockedMotoServer, template_path: Path
) -> None:
    # Given the ledger and usage tables on a moto server (real HTTP, real threads), a user, and at
    # most 2 messages a day
    endpoint = moto_server.endpoint_url
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(usage_table=f"usage-{suffix}", ledger_table=f"ledger-{suffix}", keys_path="/x/k")
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    create_usage_resources(
        client, boto3.client("ssm", endpoint_url=endpoint), template_path, settings, ["wk"]
    )
    usage = DynamoUsageStore(client, settings.usage_table, settings.rollup_shards)
    identify = Identify(
        userId="ada", traits={"email": "ada@example.com", "timezone": "UTC"}, timestamp=NOW, messageId="i"
    )
    assert not ingest([(0, identify)], PLAN, usage, NOW).errors
    spec = GuardrailsFile.model_validate(
        {"sender": {"email_from": "hello@acme.example"}, "caps": {"all": [{"max": 2, "per": "day"}]}}
    )
    rules = dataclasses.replace(RULES, guardrails=Guardrails(spec, "guardrails.yaml"))
    names = [t.id for t in rules.triggers if t.spec.action == "email"]
    router = MemoryRouter()
    results: list[DispatchResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def one(n: int) -> None:
        # Each thread its own clients, as each Lambda container has.
        ports = DispatchPorts(
            ledger=DynamoLedger(boto3.client("dynamodb", endpoint_url=endpoint), settings.ledger_table),
            usage=DynamoUsageStore(boto3.client("dynamodb", endpoint_url=endpoint), settings.usage_table, 16),
            router=router,
            rechecks=MemoryRechecks(),
        )
        rule = names[n % len(names)]
        batch = DecisionBatch(
            user="ada",
            decided_at=NOW,
            decisions=[
                decision(rule, "email", "email", "ada", f"d-{n}", rules.trigger_by_id[rule].spec.template)
            ],
        )
        start.wait()
        try:
            results.append(dispatch(batch, rules, ports, NOW))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # When 8 evaluations' batches are dispatched at the same moment
    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then exactly 2 were sent, each of the others says why not, and the ledger agrees
    assert not errors
    verdicts = [v for r in results for v in r.verdicts]
    assert len(verdicts) == 8
    assert sorted(v.outcome for v in verdicts).count("send") == 2
    assert {v.reason for v in verdicts if v.outcome != "send"} <= {"cap_all_day", "cooldown"}
    assert len(router.routed) == 2
    ledger = DynamoLedger(client, settings.ledger_table)
    assert [e.outcome for e in ledger.entries_of("ada")].count("send") == 2


def test_dispatch_refuses_to_start_on_a_bad_guardrails_file(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import re
    import shutil

    from nudge.rulebook.yamlfile import RuleFileError

    # Given rules whose guardrails.yaml caps a channel that does not exist
    rules = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, rules)
    guardrails = rules / "guardrails.yaml"
    guardrails.write_text(guardrails.read_text().replace("  sms:\n", "  smss:\n", 1))
    for name, value in {
        "NUDGE_RULES_DIR": str(rules),
        "NUDGE_EMAIL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/e",
        "NUDGE_NOTIFY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/n",
        "NUDGE_ESCALATION_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/x",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    # When the dispatch function loads (a cold start)
    try:
        with pytest.raises(RuleFileError):
            _load(REPO / "functions/dispatch/app.py", "dispatch_app_bad_rules")
    finally:
        get_settings.cache_clear()
    # Then it refuses to start, and the log names the file, the line and the problem
    logged = next(r for r in caplog.records if "rule files are invalid" in r.getMessage())
    problems: list[str] = logged.__dict__["problems"]
    assert any(re.search(r"guardrails\.yaml:\d+: .*smss", p) for p in problems), problems


def test_the_wired_dispatch_and_email_functions_read_the_suppression_list(pipeline: Pipeline) -> None:
    # Given a user, and a finish_setup email dispatched and routed to the email queue
    a_user(pipeline.settings, "grace", "acct-1")
    batch = [decision("finish_setup", "email", "email", "grace", "d-grace-1", "finish_setup")]
    pipeline.publish(DecisionBatch(user="grace", account="acct-1", decided_at=NOW, decisions=batch))
    assert pipeline.dispatch.handler(pipeline.take("DecisionQueue"), Context()) == {"batchItemFailures": []}
    deliveries = pipeline.take("EmailQueue")
    assert len(deliveries["Records"]) == 1
    # When, before it is sent, the address leaves all email (an unsubscribe under any user id)
    key = address_key([b"s" * 32], "email", "grace@example.com")  # the pipeline's keying secret
    assert key is not None
    store = DynamoSuppressionStore(boto3.client("dynamodb"), pipeline.settings.suppression_table)
    store.add(Suppression(key, "email", "unsubscribe", NOW))
    before = len(sent_emails())

    # Then the email function sends nothing, and the ledger says why
    assert pipeline.email.handler(deliveries, Context()) == {"batchItemFailures": []}
    assert len(sent_emails()) == before
    entry = pipeline.ledger.get("USER#grace", "d-grace-1")
    assert entry is not None
    assert (entry.outcome, entry.reason) == ("suppressed", "suppression_list")
    # ...and the next email decision for the address is suppressed by dispatch, routing nothing
    batch = [decision("create_first_project", "email", "email", "grace", "d-grace-2", "first_project")]
    pipeline.publish(DecisionBatch(user="grace", account="acct-1", decided_at=NOW, decisions=batch))
    assert pipeline.dispatch.handler(pipeline.take("DecisionQueue"), Context()) == {"batchItemFailures": []}
    assert pipeline.take("EmailQueue") == {"Records": []}
    entry = pipeline.ledger.get("USER#grace", "d-grace-2")
    assert entry is not None
    assert (entry.outcome, entry.reason) == ("suppressed", "suppression_list")
