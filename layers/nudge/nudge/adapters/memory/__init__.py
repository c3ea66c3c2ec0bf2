"""Every fake adapter, in memory: the same semantics as the AWS ones, for tests, the CLI and benchmarks."""

from nudge.adapters.memory.accounts import MemoryAccountLedger
from nudge.adapters.memory.channels import (
    MemoryDestinations,
    MemoryEmailSender,
    MemoryEscalationDesk,
    MemoryNotifier,
)
from nudge.adapters.memory.inbox import MemoryInbox
from nudge.adapters.memory.ledger import MemoryLedger
from nudge.adapters.memory.queues import (
    MemoryDecisionPublisher,
    MemoryIngestBuffer,
    MemoryRechecks,
    MemoryRouter,
)
from nudge.adapters.memory.segments import MemorySegmentStore
from nudge.adapters.memory.suppression import MemorySuppressionStore
from nudge.adapters.memory.usage import MemoryUsageStore

__all__ = [
    "MemoryAccountLedger",
    "MemoryDecisionPublisher",
    "MemoryDestinations",
    "MemoryEmailSender",
    "MemoryEscalationDesk",
    "MemoryInbox",
    "MemoryIngestBuffer",
    "MemoryLedger",
    "MemoryNotifier",
    "MemoryRechecks",
    "MemoryRouter",
    "MemorySegmentStore",
    "MemorySuppressionStore",
    "MemoryUsageStore",
]
