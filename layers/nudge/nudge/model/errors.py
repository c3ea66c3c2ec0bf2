"""Domain errors raised at the AWS edge (stores and channel adapters), so callers never see botocore.

Stores: StateConflict (someone wrote first: re-read and retry), StoreUnavailable (retry the
request as a whole), ItemTooLarge (the item would pass its size bound: retrying cannot help).
Channels: what a caller may do next depends on which one it gets:

- SendThrottled: nothing was sent; retry later (the adapter already backed off a few times).
- SendRejected: nothing was sent and retrying the same message will not help (bad address,
  unverified sender, disabled endpoint...); `.code` says why.
- SendFailed: the outcome is unknown. The request may have reached AWS before the connection
  broke, so a retry may deliver the message twice; callers that must not duplicate record the
  message as "maybe sent" before retrying.
- RecipientOptedOut: the recipient asked not to be contacted on this channel; nothing was sent.
"""

import re
from typing import ClassVar


class StateConflict(Exception):
    """Someone else wrote the item since it was read: re-read, re-fold, try again."""


class StoreUnavailable(Exception):
    """DynamoDB refused or failed the call (throttling, outage): the request may be retried as a whole."""


class ItemTooLarge(Exception):
    """The item a write would store is over the store's bound (nudge.model.limits.MAX_ITEM_BYTES,
    or DynamoDB's own 400 KB): nothing was written, and the same write will never succeed."""

    def __init__(self, size: int | None, limit: int) -> None:
        self.size = size  # None: DynamoDB refused it without saying how large it was
        self.limit = limit
        super().__init__(f"item of {size if size is not None else 'over'} bytes; the limit is {limit}")


# AWS error messages sometimes quote the address or number they refused; these errors end up
# in logs, which must never hold contact details or endpoint ARNs.
_EMAIL = re.compile(r"[^\s<>\"',;:]+@[^\s<>\"',;:]+")
_PHONE = re.compile(r"\+\d[\d\s-]{6,}\d")
_ARN = re.compile(r"arn:aws[\w-]*:[^\s\"',;]+")


def redact(message: str) -> str:
    """The message with email addresses, phone numbers and ARNs masked."""
    return _PHONE.sub("<phone>", _ARN.sub("<arn>", _EMAIL.sub("<email>", message)))


class SendError(Exception):
    """A message could not be handed to its channel."""

    retryable: ClassVar[bool] = False


class SendThrottled(SendError):
    """AWS throttled every attempt; nothing was sent. Retry later."""

    retryable = True


class SendRejected(SendError):
    """AWS (or our own validation) refused the message for good; nothing was sent."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = redact(message)
        super().__init__(f"{code}: {self.message}" if self.message else code)


class SendFailed(SendError):
    """The call failed without a clear answer (network error, AWS 5xx): it may or may not have
    been sent. Retrying is allowed but may deliver twice."""

    retryable = True


class RecipientOptedOut(SendError):
    """The recipient opted out of this channel (for SMS, at the carrier: they replied STOP)."""


class ReceiverUnavailable(SendThrottled):
    """A webhook receiver did not confirm (unreachable, no answer, an error status) after a few
    attempts. Retry later under the same webhook-id: receivers dedupe on it, so a post that did
    arrive is not taken twice. The queue retries, then keeps it in its DLQ: nothing is lost."""
