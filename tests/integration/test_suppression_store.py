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


def test_a_record_is_kept_once_with_its_first_time_and_ses_reasons_beside_an_unsubscribe(
    aws: None, template_path: Path
) -> None:
    for store in stores(template_path):
        # Given an address suppressed from onboarding email, then the same again later
        store.add(Suppression("email#aa", "email:onboarding", "unsubscribe", AT))
        store.add(Suppression("email#aa", "email:onboarding", "unsubscribe", AT + timedelta(days=1)))
        # ...and from all email, then its mail bouncing (SES feedback) in that scope, twice
        store.add(Suppression("email#aa", "email", "unsubscribe", AT + timedelta(days=2)))
        store.add(Suppression("email#aa", "email", "bounce", AT + timedelta(days=3)))
        store.add(Suppression("email#aa", "email", "bounce", AT + timedelta(days=4)))
        # ...and another address
        store.add(Suppression("email#bb", "email", "unsubscribe", AT))

        # When the first address is looked up (under two keys, one unknown)
        found = store.find(["email#aa", "email#zz"])

        # Then each scope and reason is there once, as first recorded: the bounce beside the
        # unsubscribe of the same scope (it blocks more), and nothing of the other address
        assert sorted(found, key=lambda s: (s.scope, s.reason)) == [
            Suppression("email#aa", "email", "bounce", AT + timedelta(days=3)),
            Suppression("email#aa", "email", "unsubscribe", AT + timedelta(days=2)),
            Suppression("email#aa", "email:onboarding", "unsubscribe", AT),
        ], type(store).__name__
        assert store.find([]) == []
