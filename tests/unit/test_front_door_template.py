"""The buffered front door as deployed: a redrive of its dead letters can never count an event twice
(the DLQ drops messages before the fold's dedupe window ends), and its concurrency is its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudge.settings import Settings
from nudge.tools.local.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path("template.yaml"))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def test_the_dead_letters_expire_before_the_dedupe_window_forgets_their_ids() -> None:
    window = Settings().dedupe_days * 86_400
    queue = RESOURCES["IngestQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDLQ", "Arn"]}
    # A standard queue's DLQ counts retention from the first enqueue: this bounds a redrive's age
    assert int(RESOURCES["IngestDLQ"]["Properties"]["MessageRetentionPeriod"]) < window
    assert int(queue["MessageRetentionPeriod"]) < window


def test_the_front_door_reserves_its_own_concurrency_not_the_ingest_functions() -> None:
    reserved = RESOURCES["FrontDoorFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert reserved == {
        "Fn::If": [
            "HasFrontDoorReservation",
            {"Ref": "FrontDoorReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert TEMPLATE["Parameters"]["FrontDoorReservedConcurrency"]["Default"] == 0
