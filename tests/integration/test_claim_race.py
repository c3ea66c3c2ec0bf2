"""At most one send per decision when two containers claim the same delivery at the same moment.

SQS may hand one message to two pollers at once (at-least-once delivery), so two email functions
can both read the decision's ledger entry as `queued`. The real email handler is loaded twice (two
containers, each with its own boto3 clients) against one moto server (real HTTP, real threads, the
ledger table from template.yaml). A barrier, put in at the ledger port, holds each container just
before its claim (`queued -> sending`) until both are there: the race is forced on every run, not
hoped for. The conditional write lets exactly one through.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from nudge import bootstrap, clock
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.dynamo.usage import DynamoUsageStore
from nudge.model.decisions import Decision
from nudge.model.ledger import LedgerEntry, Status
from nudge.model.messages import Identify, Message, Track
from nudge.model.queue import DecisionBatch
from nudge.observability import logger, metrics
from nudge.rulebook.plan import load_plan
from nudge.services.ingest import ingest
from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer, create_queues, create_usage_resources
from nudge.tools.local.queues import sqs_record
from tests.shipped import ONE_SHOT_DIR, UNHELD, load_handler

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # noon in New York: outside quiet hours
REGION = "us-east-1"
# A container that never reaches its claim fails the test instead of hanging it.
BARRIER_SECONDS = 30


class Context:
    function_name = "email"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:email"
    aws_request_id = "req-race"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class ClaimBarrier:
    """The ledger port as a container sees it, except that the claim (`queued -> sending`) waits
    at a barrier shared by every container until all of them have reached their own claim.

    `widen` stands in for a claim without its condition: it also accepts an entry some other
    container has claimed already (`sending`), which is what an unconditional write would do.
    """

    def __init__(self, inner: DynamoLedger, barrier: threading.Barrier, *, widen: bool = False) -> None:
        self._inner = inner
        self._barrier = barrier
        self._widen = widen
        self.claims: list[LedgerEntry | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def move(
        self,
        subject: str,
        decision_id: str,
        expected: Iterable[Status],
        status: Status,
        now: datetime,
        **changes: Any,
    ) -> LedgerEntry | None:
        expected = list(expected)
        if expected != ["queued"] or status != "sending":
            return self._inner.move(subject, decision_id, expected, status, now, **changes)
        self._barrier.wait()
        if self._widen:
            expected = ["queued", "sending"]
        claimed = self._inner.move(subject, decision_id, expected, status, now, **changes)
        self.claims.append(claimed)
        return claimed


@dataclass
class Race:
    endpoint: str
    settings: Settings
    queues: dict[str, str]
    user: str
    logs: io.StringIO

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def container(self, name: str) -> ModuleType:
        """A cold start of the email function: its own clients, rules and unsubscribe secret."""
        return load_handler(REPO / "functions/email/app.py", f"email_{name}_{uuid.uuid4().hex[:8]}")

    def sent_to_user(self) -> list[Any]:
        return [
            m
            for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
            if self.user in m.destinations[0]
        ]

    def delivery_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.logs.getvalue().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("message") == "delivery"]


@pytest.fixture
def race(
    moto_server: LockedMotoServer,
    template_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_clock: Callable[[clock.Source], None],
) -> Iterator[Race]:
    endpoint = moto_server.endpoint_url
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        usage_table=f"usage-{suffix}",
        ledger_table=f"ledger-{suffix}",
        keys_path=f"/nudge/race-{suffix}/keys",
        unsubscribe_secret_param=f"/nudge/race-{suffix}/unsubscribe-secret",
        suppression_table=f"suppression-{suffix}",
        suppression_secret_param=f"/nudge/race-{suffix}/suppression-secret",
    )

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION)

    create_usage_resources(client("dynamodb"), client("ssm"), template_path, settings, ["wk"])
    queues = create_queues(client("sqs"), template_path, f"race-{suffix}")
    for secret in (settings.unsubscribe_secret_param, settings.suppression_secret_param):
        client("ssm").put_parameter(Name=secret, Value="s" * 32, Type="SecureString", Overwrite=True)
    client("ses").verify_email_identity(EmailAddress="hello@acme.example")
    # Every client the functions make (at their cold start) talks to the moto server only.
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "NUDGE_USAGE_TABLE": settings.usage_table,
        "NUDGE_LEDGER_TABLE": settings.ledger_table,
        "NUDGE_RULES_DIR": str(ONE_SHOT_DIR),
        "NUDGE_EMAIL_QUEUE_URL": queues["EmailQueue"],
        "NUDGE_NOTIFY_QUEUE_URL": queues["NotifyQueue"],
        "NUDGE_ESCALATION_QUEUE_URL": queues["EscalationQueue"],
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": settings.unsubscribe_secret_param,
        "NUDGE_UNSUBSCRIBE_URL": "https://api.example/v1/unsubscribe",
        "NUDGE_SUPPRESSION_TABLE": settings.suppression_table,
        "NUDGE_SUPPRESSION_SECRET_PARAM": settings.suppression_secret_param,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Powertools keeps one SSM provider (and its client) per process: these cold starts get a fresh
    # one, on this server, and whatever was there before comes back after the test.
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider())
    bootstrap.reset()
    use_clock(lambda: NOW)
    # A user the finish_setup email can reach.
    user = f"race-{suffix}"
    messages: list[Message] = [
        Track(userId=user, event="signed_up", timestamp=NOW, messageId=f"{user}-s"),
        Identify(
            userId=user,
            traits={"email": f"{user}@example.com", "first_name": "Ada", "timezone": "America/New_York"},
            timestamp=NOW,
            messageId=f"{user}-i",
        ),
    ]
    store = DynamoUsageStore(client("dynamodb"), settings.usage_table, settings.rollup_shards)
    assert not ingest(list(enumerate(messages)), load_plan(ONE_SHOT_DIR), store, NOW).errors
    # The functions' log lines, as CloudWatch would keep them.
    logs = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    real_stream = handler.setStream(logs)
    try:
        yield Race(endpoint, settings, queues, user, logs)
    finally:
        handler.setStream(real_stream)
        logger.set_correlation_id(None)
        # The containers' handle() ran without the handler's metrics decorator: drop what they added.
        metrics.clear_metrics()
        bootstrap.reset()


def routed_delivery(race: Race) -> dict[str, Any]:
    """A finish_setup decision, dispatched by the real dispatch function: the one SQS record it
    put on the email queue, as Lambda hands it to the email function."""
    decision = Decision(
        decision_id=f"d-{race.user}",
        user=race.user,
        account=None,
        rule="finish_setup",
        kind="onboarding",
        action="email",
        channel="email",
        template=UNHELD.trigger_by_id["finish_setup"].spec.template,
        priority=60,
        reason="test",
        facts={"days since signup": 2},
        decided_at=NOW,
    )
    sqs = race.client("sqs")
    batch = DecisionBatch(user=race.user, decided_at=NOW, decisions=[decision])
    sqs.send_message(QueueUrl=race.queues["DecisionQueue"], MessageBody=batch.model_dump_json())
    [message] = sqs.receive_message(QueueUrl=race.queues["DecisionQueue"], AttributeNames=["All"])["Messages"]
    dispatch = load_handler(REPO / "functions/dispatch/app.py", f"dispatch_{uuid.uuid4().hex[:8]}")
    # The dispatch function with holdouts off: this user id must not hash into a control group.
    dispatch.decisions.service = dataclasses.replace(dispatch.decisions.service, rules=UNHELD)
    queue_arn = f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:DecisionQueue"
    assert dispatch.handler({"Records": [sqs_record(message, queue_arn)]}, Context()) == {
        "batchItemFailures": []
    }
    [routed] = sqs.receive_message(QueueUrl=race.queues["EmailQueue"], AttributeNames=["All"])["Messages"]
    return sqs_record(routed, f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT_ID}:EmailQueue")


def claim_at_once(race: Race, record: dict[str, Any], *, widen: bool = False) -> list[ClaimBarrier]:
    """Two email containers handle the same record at once, meeting at the barrier before the claim."""
    barrier = threading.Barrier(2, timeout=BARRIER_SECONDS)
    ledgers: list[ClaimBarrier] = []
    containers = []
    for name in ("a", "b"):
        module = race.container(name)
        deliveries = module.deliveries
        ledger = ClaimBarrier(deliveries.service.ports.ledger, barrier, widen=widen)
        ports = dataclasses.replace(deliveries.service.ports, ledger=ledger)
        deliveries.service = dataclasses.replace(deliveries.service, ports=ports)
        ledgers.append(ledger)
        containers.append(deliveries)
    answers: list[Any] = []
    errors: list[BaseException] = []

    def run(deliveries: Any) -> None:
        try:
            # What the function's handler runs inside its decorators (log context, tracing, metrics
            # flush): those are per container in Lambda, and would be shared by threads here.
            answers.append(deliveries.handle({"Records": [record]}, Context()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BARRIER_SECONDS)
    assert not errors, errors
    assert answers == [{"batchItemFailures": []}] * 2
    return ledgers


def test_two_containers_claiming_one_delivery_at_once_send_it_once(race: Race) -> None:
    # Given a decision dispatched to the email queue, its delivery handed to two containers at once
    record = routed_delivery(race)
    entry = DynamoLedger(race.client("dynamodb"), race.settings.ledger_table).get(
        f"USER#{race.user}", f"d-{race.user}"
    )
    assert entry is not None
    assert entry.status == "queued"

    # When both read the entry as queued and reach their claim together
    ledgers = claim_at_once(race, record)

    # Then exactly one claim won and one found the entry claimed elsewhere
    claims = [claim for ledger in ledgers for claim in ledger.claims]
    assert len(claims) == 2
    assert sorted(claim is None for claim in claims) == [False, True]
    # ...one email left SES, and the ledger holds it sent, with SES's message id
    [sent] = race.sent_to_user()
    entry = DynamoLedger(race.client("dynamodb"), race.settings.ledger_table).get(
        f"USER#{race.user}", f"d-{race.user}"
    )
    assert entry is not None
    assert (entry.status, entry.provider_id) == ("sent", sent.id)
    # ...and each container said what happened to it
    outcomes = sorted((line["result"], line["reason"]) for line in race.delivery_lines())
    assert outcomes == [("duplicate", "claimed_elsewhere"), ("sent", "")]


def test_without_the_claims_condition_the_same_race_sends_twice(race: Race) -> None:
    # Given the same race, with a claim that also takes an entry already claimed (no condition)
    record = routed_delivery(race)

    # When both containers claim at once
    ledgers = claim_at_once(race, record, widen=True)

    # Then both claims go through and the user gets the email twice: the race above is real, and
    # the conditional claim is what keeps it to one send
    assert all(claim is not None for ledger in ledgers for claim in ledger.claims)
    assert len(race.sent_to_user()) == 2
