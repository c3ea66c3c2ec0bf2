"""The in-app inbox on DynamoDB (moto, the ledger table built from template.yaml) keeps what the
memory fake keeps; erasing the user's ledger takes their inbox with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from nudge.adapters.dynamo.inbox import DynamoInbox, scan_inbox
from nudge.adapters.dynamo.ledger import DynamoLedger
from nudge.adapters.memory import MemoryInbox
from nudge.model.inapp import InAppMessage, Survey
from nudge.ports import Inbox
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _settings(template_path: Path) -> Settings:
    settings = Settings(ledger_table=f"ledger-{uuid.uuid4().hex[:8]}")
    create_usage_resources(boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, ["wk"])
    return settings


def _message(message_id: str, user: str = "ann", days: int = 14, at: datetime = AT) -> InAppMessage:
    return InAppMessage(
        message_id=message_id,
        user_id=user,
        rule="ask",
        title="Quick question",
        body="Why?",
        survey=Survey(question="Why?", choices=["a", "b"], property="blocker"),
        created_at=at,
        expires_at=at + timedelta(days=days),
    )


def test_a_message_is_stored_once_listed_newest_first_until_it_expires(
    aws: None, template_path: Path
) -> None:
    settings = _settings(template_path)
    stores: list[Inbox] = [DynamoInbox(boto3.client("dynamodb"), settings.ledger_table), MemoryInbox()]
    for store in stores:
        name = type(store).__name__
        # Given two messages for ann (one short-lived) and one for bob, the first put twice
        assert store.put(_message("m1")) is True, name
        assert store.put(_message("m1").model_copy(update={"title": "changed"})) is False, name
        assert store.put(_message("m2", days=1, at=AT + timedelta(hours=1))) is True, name
        assert store.put(_message("m3", user="bob")) is True, name
        # Then ann's inbox lists hers, newest first, the first as first written
        listed = store.list("ann", AT + timedelta(hours=2), 50)
        assert [(m.message_id, m.title) for m in listed] == [
            ("m2", "Quick question"),
            ("m1", "Quick question"),
        ]
        # and the short-lived one leaves once expired
        assert [m.message_id for m in store.list("ann", AT + timedelta(days=2), 50)] == ["m1"], name
        assert store.get("bob", "m1") is None, name


def test_a_status_moves_only_from_the_status_read(aws: None, template_path: Path) -> None:
    settings = _settings(template_path)
    stores: list[Inbox] = [DynamoInbox(boto3.client("dynamodb"), settings.ledger_table), MemoryInbox()]
    for store in stores:
        name = type(store).__name__
        store.put(_message("m1"))
        seen = _message("m1").model_copy(update={"status": "seen"})
        assert store.replace(seen, "new") is True, name
        # A second writer that read "new" too loses
        answered = _message("m1").model_copy(update={"status": "answered", "answer": "a"})
        assert store.replace(answered, "new") is False, name
        assert store.replace(answered, "seen") is True, name
        stored = store.get("ann", "m1")
        assert stored is not None
        assert (stored.status, stored.answer) == ("answered", "a"), name
        # and nothing is written for a message that is not there
        assert store.replace(_message("gone"), "new") is False, name
        assert store.get("ann", "gone") is None, name


def test_erasing_the_users_ledger_erases_their_inbox(aws: None, template_path: Path) -> None:
    settings = _settings(template_path)
    client = boto3.client("dynamodb")
    inbox = DynamoInbox(client, settings.ledger_table)
    inbox.put(_message("m1"))
    inbox.put(_message("m2", user="bob"))
    DynamoLedger(client, settings.ledger_table).erase_user("ann")
    assert inbox.get("ann", "m1") is None
    assert inbox.get("bob", "m2") is not None


def test_a_scan_for_the_report_finds_every_users_messages_and_no_decision(
    aws: None, template_path: Path
) -> None:
    # Given messages for two users in the ledger table, beside a decision of the ledger's own
    settings = _settings(template_path)
    client = boto3.client("dynamodb")
    store = DynamoInbox(client, settings.ledger_table)
    store.put(_message("m1"))
    store.put(_message("m2", user="bob"))
    assert store.replace(_message("m1").model_copy(update={"status": "answered", "answer": "a"}), "new")
    client.put_item(
        TableName=settings.ledger_table, Item={"pk": {"S": "USER#ann"}, "sk": {"S": "DECISION#d1"}}
    )
    # Then the scan returns the two messages as stored, and nothing else
    found = {m.message_id: (m.user_id, m.status, m.answer) for m in scan_inbox(client, settings.ledger_table)}
    assert found == {"m1": ("ann", "answered", "a"), "m2": ("bob", "new", None)}
