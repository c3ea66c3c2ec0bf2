"""Email through SES v2 as raw MIME, so we control every header (List-Unsubscribe included).

build_mime relies on the standard library's email policy to refuse header injection: a header
value holding CR or LF raises instead of starting a new header. Addresses are also parsed, so
a "to" of "a@x.com, b@y.com" is refused rather than sent to two people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any, Protocol

from nudge.adapters.retry import DEFAULT_BACKOFF, call_with_backoff
from nudge.backoff import Backoff
from nudge.model.channels import Email
from nudge.model.errors import SendRejected
from nudge.observability import logger

# List-Unsubscribe is written verbatim (set_raw, validated below), and refold_source="none"
# keeps it so: Python would otherwise turn a URL longer than a line into RFC 2047 encoded-words,
# which mail clients do not decode there. A line may be up to 998 characters (RFC 5322).
POLICY = SMTP.clone(refold_source="none")
MAX_UNSUBSCRIBE_CHARS = 900
# List-Unsubscribe holds <target>: a URL with these could close its bracket and add a target of
# its own (URL-encode them in the URL instead).
_BRACKET_UNSAFE = re.compile(r"[\s<>,]")

# SES message tags allow ASCII letters, digits, "_" and "-", at most 256 characters, in names
# and values alike (API reference, MessageTag); anything else is replaced rather than refused.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
TAG_MAX_CHARS = 256
MAX_TAGS = 50


class SesV2Client(Protocol):
    """The part of boto3's sesv2 client used here."""

    def send_email(self, **kwargs: Any) -> Mapping[str, Any]: ...


LOOPBACK_PREFIXES = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/")


def _set(message: EmailMessage, header: str, value: str) -> None:
    try:
        message[header] = value
    except ValueError as exc:
        # The value is not echoed back: it is usually an address or a trait.
        raise SendRejected("InvalidHeader", f"{header} is not a valid header value (no line breaks)") from exc


def _one_address(message: EmailMessage, header: str) -> Address:
    addresses = message[header].addresses
    if len(addresses) != 1 or not addresses[0].domain or message[header].defects:
        raise SendRejected("InvalidAddress", f"{header} must hold exactly one valid address")
    address: Address = addresses[0]
    return address


def build_mime(email: Email) -> bytes:
    """The email as RFC 5322 bytes with CRLF line ends: text/plain, or multipart/alternative
    text + html. SES sets Date and Message-ID itself (and overrides any given)."""
    message = EmailMessage(policy=POLICY)
    _set(message, "From", email.sender)
    _one_address(message, "From")
    _set(message, "To", email.to)
    _one_address(message, "To")
    if email.reply_to:
        _set(message, "Reply-To", email.reply_to)
        _one_address(message, "Reply-To")
    _set(message, "Subject", email.subject)
    if email.unsubscribe_url:
        url = email.unsubscribe_url
        # RFC 8058 wants https; plain http is allowed for a loopback host only (the local stack).
        secure = url.startswith("https://") or url.startswith(LOOPBACK_PREFIXES)
        if not secure or _BRACKET_UNSAFE.search(url) or len(url) > MAX_UNSUBSCRIBE_CHARS:
            raise SendRejected("InvalidUnsubscribeUrl", "one-click unsubscribe needs a plain https URL")
        # Verbatim: the URL was checked above to hold no whitespace, so no line breaks. No mailto:
        # target: nothing would read that mailbox.
        message.set_raw("List-Unsubscribe", f"<{url}>")
        # RFC 8058: the POST that mail clients (and Gmail's and Yahoo's bulk-sender rules) expect.
        _set(message, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    message.set_content(email.text)
    if email.html:
        message.add_alternative(email.html, subtype="html")
    return message.as_bytes()


def recipient(email: Email) -> str:
    """The bare address email.to names (SES's Destination takes addresses, not display names)."""
    message = EmailMessage(policy=POLICY)
    _set(message, "To", email.to)
    return _one_address(message, "To").addr_spec


def ses_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """`tags` as SES EmailTags, names and values reduced to SES's allowed characters."""

    def clean(text: str) -> str:
        return _TAG_UNSAFE.sub("_", text)[:TAG_MAX_CHARS] or "_"

    return [{"Name": clean(name), "Value": clean(value)} for name, value in list(tags.items())[:MAX_TAGS]]


class SesEmailSender:
    """SES v2 SendEmail with Raw content. The sender must be a verified identity."""

    def __init__(
        self,
        client: SesV2Client,
        *,
        configuration_set: str | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.client = client
        self.configuration_set = configuration_set
        self.backoff = backoff

    def send(self, email: Email) -> str:
        request: dict[str, Any] = {
            "FromEmailAddress": email.sender,
            "Destination": {"ToAddresses": [recipient(email)]},
            "Content": {"Raw": {"Data": build_mime(email)}},
        }
        if email.tags:
            request["EmailTags"] = ses_tags(email.tags)
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        response = call_with_backoff(lambda: self.client.send_email(**request), self.backoff)
        message_id = str(response["MessageId"])
        logger.info("email sent", extra={"message_id": message_id})
        return message_id
