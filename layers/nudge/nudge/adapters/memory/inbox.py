"""The in-app inbox in memory: what unit tests and the CLI use."""

from __future__ import annotations

from datetime import datetime

from nudge.model.inapp import InAppMessage


class MemoryInbox:
    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], InAppMessage] = {}

    def put(self, message: InAppMessage) -> bool:
        key = (message.user_id, message.message_id)
        if key in self.messages:
            return False
        self.messages[key] = message
        return True

    def get(self, user_id: str, message_id: str) -> InAppMessage | None:
        return self.messages.get((user_id, message_id))

    def list(self, user_id: str, now: datetime, limit: int) -> list[InAppMessage]:
        live = [m for (u, _), m in self.messages.items() if u == user_id and m.live(now)]
        return sorted(live, key=lambda m: (m.created_at, m.message_id), reverse=True)[:limit]

    def replace(self, message: InAppMessage, expected_status: str) -> bool:
        key = (message.user_id, message.message_id)
        stored = self.messages.get(key)
        if stored is None or stored.status != expected_status:
            return False
        self.messages[key] = message
        return True
