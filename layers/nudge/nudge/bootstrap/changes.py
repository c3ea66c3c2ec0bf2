"""The changes function's services: the EventBridge bus Nudge owns."""

from __future__ import annotations

import boto3

from nudge.adapters.eventbridge import EventBridgeChanges
from nudge.bootstrap import configured


def wire_changes() -> EventBridgeChanges:
    settings = configured()
    if not settings.event_bus_name:
        raise ValueError("NUDGE_EVENT_BUS_NAME is not set: segment changes would have nowhere to go")
    return EventBridgeChanges(boto3.client("events"), settings.event_bus_name)
