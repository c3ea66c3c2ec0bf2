"""The suppression list on DynamoDB (moto, the table built from template.yaml) keeps what the memory
fake keeps (tests/integration/test_dispatch_actions.py has the wired functions reading it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from nudge.adapters.dynamo.suppression import DynamoSuppressionStore
from nudge.adapters.memory import MemorySuppressionStore
from nudge.model.suppression import Suppression
from nudge.ports import SuppressionStore
from nudge.settings import Settings
from nudge.tools.local.aws import create_usage_resources

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def stores(template_path: Path) -> list[SuppressionStore]:
    settings = Settings(suppression_table=f"suppression-{uuid.uuid4().hex[:8]}")
    create_usage_resources(boto3.client("dynamodb"), boto3.client("ssm"), template_path, settings, ["wk"])
    return [
        DynamoSuppressionStore(boto3.client("dynamodb"), settings.suppression_table),
        MemorySuppressionStore(),
    ]


def test_a_record_is_kept_once_with_its_first_reason_and_time(aws: None, template_path: Path) -> None:
    for store in stores(template_path):
        # Given an address suppressed from onboarding email, then the same again later
        store.add(Suppression("email#aa", "email:onboarding", "unsubscribe", AT))
        store.add(Suppression("email#aa", "email:onboarding", "complaint", AT + timedelta(days=1)))
        # ...and from all email, and another address
        store.add(Suppression("email#aa", "email", "unsubscribe", AT + timedelta(days=2)))
        store.add(Suppression("email#bb", "email", "unsubscribe", AT))

        # When the first address is looked up (under two keys, one unknown)
        found = store.find(["email#aa", "email#zz"])

        # Then each scope is there once, as first recorded, and nothing of the other address
        assert sorted(found, key=lambda s: s.scope) == [
            Suppression("email#aa", "email", "unsubscribe", AT + timedelta(days=2)),
            Suppression("email#aa", "email:onboarding", "unsubscribe", AT),
        ], type(store).__name__
        assert store.find([]) == []
