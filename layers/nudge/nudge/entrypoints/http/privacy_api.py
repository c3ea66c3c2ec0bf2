"""Unsubscribe links, erasure and export: the routes, their pages and their status codes (one place).

    GET  /v1/unsubscribe?token=T[&all=1]   the link in a message: a page asking to confirm (a form
                                           POSTing back); records nothing, as mail scanners follow links
    POST /v1/unsubscribe?token=T[&all=1]   RFC 8058 one-click (body List-Unsubscribe=One-Click), and
                                           the page's form: unsubscribes
    DELETE /v1/users/{userId}              erasure (admin key: ingest keys get 403)
    GET /v1/users/{userId}/export          what Nudge holds on the user, as JSON (admin key)

The unsubscribe routes take no write key: the signed token is the credential. Their answers
never echo the user id; logs hold the scope and the outcome only.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from nudge import clock
from nudge.bootstrap.api import services
from nudge.domain.tokens import MAX_TOKEN_CHARS, TokenInvalid
from nudge.entrypoints.http.access import ADMIN_SECURITY
from nudge.entrypoints.http.shapes import ErrorItem, IngestResponse
from nudge.model.errors import StoreUnavailable
from nudge.observability import logger, metrics
from nudge.services.erasure import erase_user
from nudge.services.export import export_user
from nudge.services.suppression import SecretsUnavailable
from nudge.services.unsubscribe import Unsubscribed, read_link, unsubscribe

UNSUBSCRIBE_PATH = "/v1/unsubscribe"
router = Router()  # type: ignore[no-untyped-call]

CHANNEL_NOUNS = {"email": "emails", "sms": "text messages", "push": "push notifications"}
INVALID_LINK = (
    "This unsubscribe link is incomplete or has been changed. Open it again from the email (some mail "
    "apps cut long links), or reply to the email and ask to be unsubscribed."
)
UNAVAILABLE = "We could not unsubscribe you just now; please try the link again in a few minutes."
# The page is self-contained: no script, no external asset, no referrer (the URL holds the token).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class UnsubscribeResponse(BaseModel):
    success: bool
    scope: str | None = Field(
        default=None, description='What the user left: "email:onboarding" (a topic) or "email" (the channel).'
    )
    errors: list[ErrorItem] = Field(default_factory=list)


class DeletedCounts(BaseModel):
    usage: int = Field(description="Usage-table items deleted (usage state, segment record, ...).")
    ledger: int = Field(description="Ledger items deleted (delivery record, decisions, escalations raised).")


class ErasureResponse(BaseModel):
    success: bool
    deleted: DeletedCounts
    anonymized: int = Field(
        default=0,
        description="Items kept for the account's open escalation, with the user replaced by 'erased'.",
    )
    merged_into: str | None = Field(
        default=None,
        description=(
            "When the id had been merged into another user (an alias): that user, erased with every "
            "id merged into them, since they are the same person."
        ),
    )


class MergedIdExport(BaseModel):
    user_id: str = Field(
        description="An id merged into the person (a device's anon:<id>, an aliased userId)."
    )
    usage: dict[str, Any] | None = Field(
        description="Its usage state (a pointer to the person, once merged)."
    )
    segments: dict[str, Any] | None = Field(description="Its segment record, from before the merge.")
    delivery: dict[str, Any] | None = Field(description="Its delivery record and unsubscribes.")
    decisions: list[dict[str, Any]] = Field(description="Every message decision about that id.")


class UserExportResponse(BaseModel):
    user_id: str
    found: bool = Field(description="Whether Nudge holds anything on the user.")
    usage: dict[str, Any] | None = Field(
        description="Usage state: traits, event counts, milestones, sessions, kept context."
    )
    segments: dict[str, Any] | None = Field(description="Lifecycle segment, its history, pending deferrals.")
    delivery: dict[str, Any] | None = Field(description="Recent sends, last send per rule, unsubscribes.")
    decisions: list[dict[str, Any]] = Field(description="Every message decision about the user.")
    account: dict[str, Any] | None = Field(description="The account the user belongs to, and its traits.")
    merged_into: str | None = Field(
        default=None,
        description=(
            "When the id had been merged into another user (an alias): that user, whose data (the "
            "fields above) this export holds; erasing the id erases them."
        ),
    )
    merged: list[MergedIdExport] = Field(
        default_factory=list,
        description="What is held under each id merged into the person (erased with them).",
    )
    in_app: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The person's in-app messages still stored: status, and a survey's answer.",
    )


class _Unavailable(Exception):
    """The ledger or the secret store failed: 503, the link may be tried again."""


_TOKEN = Query(
    min_length=1,
    max_length=MAX_TOKEN_CHARS,
    description="The signed token from the message's unsubscribe link.",
)
_ALL = Query(
    alias="all",
    description="1 (or true): leave the token's whole channel (all email), not only its topic.",
)
# JSON for mail clients' one-click POSTs, a page for people (GET, or a browser's POST).
_PAGE_OR_JSON: dict[str, Any] = {
    "application/json": {"model": UnsubscribeResponse},
    "text/html": {"schema": {"type": "string"}},
}
_UNSUBSCRIBE_RESPONSES: dict[int, OpenAPIResponse] = {
    200: {
        "description": (
            "GET: the page asking to confirm. POST: unsubscribed (also when already unsubscribed: "
            "clicking twice is fine). A genuine token is honoured however old it is."
        ),
        "content": _PAGE_OR_JSON,
    },
    400: {"description": "The token is missing, malformed or tampered with.", "content": _PAGE_OR_JSON},
    503: {"description": "Storage or the signing secrets are unavailable; retry.", "content": _PAGE_OR_JSON},
}
_REFUSED: dict[str, Any] = {"application/json": {"model": IngestResponse}}


@router.get(
    UNSUBSCRIBE_PATH,
    summary="Open a message's unsubscribe link",
    description=(
        "Opened from the link in a message: a small HTML page asking to confirm, whose button POSTs "
        "back. Records nothing: mail scanners and link previews open links nobody clicked."
    ),
    responses=_UNSUBSCRIBE_RESPONSES,
    tags=["privacy"],
)
def unsubscribe_link(
    token: Annotated[str, _TOKEN], whole_channel: Annotated[bool, _ALL] = False
) -> Response[Any]:
    svc = services()
    would = read_link(token, whole_channel=whole_channel, secrets=svc.unsubscribe_secrets)
    return _confirm(would, token, whole_channel)


@router.post(
    UNSUBSCRIBE_PATH,
    summary="One-click unsubscribe (RFC 8058)",
    description=(
        "What mail clients POST for List-Unsubscribe-Post, with the form body "
        "`List-Unsubscribe=One-Click` and the token in the query string. The body is not required: "
        "the token alone authorizes. Answers JSON, or a page when the client asks for text/html "
        "(a browser submitting the link page's form)."
    ),
    responses=_UNSUBSCRIBE_RESPONSES,
    tags=["privacy"],
)
def unsubscribe_one_click(
    token: Annotated[str, _TOKEN], whole_channel: Annotated[bool, _ALL] = False
) -> Response[Any]:
    return _answer(_unsubscribe(token, whole_channel), token)


@router.delete(
    "/v1/users/<userId>",
    summary="Erase a user",
    description=(
        "Deletes the user's usage state, segment record, delivery record, unsubscribes and "
        "decisions, and the escalation decisions they raised (the one behind an account's "
        "unhandled escalation is kept with the user replaced by 'erased'), and the same for every "
        "id merged into them. An id merged into another user erases that user (merged_into names "
        "them). Account rollups hold counts only and stay. Idempotent: a user with nothing stored "
        "answers zeros."
    ),
    responses={
        200: {"description": "Erased (or nothing was stored)."},
        401: {"description": "Missing, unknown or revoked key.", "content": _REFUSED},
        403: {"description": "Not an admin key.", "content": _REFUSED},
        503: {"description": "Storage unavailable; retry (erasure is idempotent).", "content": _REFUSED},
    },
    tags=["privacy"],
    security=ADMIN_SECURITY,
)
def erase(user_id: Annotated[str, Path(alias="userId", min_length=1)]) -> Response[ErasureResponse]:
    # API Gateway passes the decoded id in pathParameters; the matched path may be still encoded.
    user_id = (router.current_event.get("pathParameters") or {}).get("userId") or user_id
    svc = services()
    erased = erase_user(
        user_id, usage=svc.store, segments=svc.segments, ledger=svc.ledger, accounts=svc.accounts
    )
    metrics.add_metric(name="UsersErased", unit="Count", value=1)
    logger.info(
        "user erased",
        extra={
            "usage_items": erased.usage,
            "ledger_items": erased.ledger,
            "anonymized": erased.anonymized,
            "merged_away": erased.merged_into is not None,
        },
    )
    body = ErasureResponse(
        success=True,
        deleted=DeletedCounts(usage=erased.usage, ledger=erased.ledger),
        anonymized=erased.anonymized,
        merged_into=erased.merged_into,
    )
    return Response(200, content_types.APPLICATION_JSON, body)


@router.get(
    "/v1/users/<userId>/export",
    summary="Export what Nudge holds on a user",
    description=(
        "The user's usage state, segment record, delivery record and unsubscribes, every message "
        "decision, and their account membership, and what is held under each id merged into them: "
        "the items erasure deletes, as JSON. An id merged into another user answers that user's "
        "export, merged_into naming them. A user with nothing stored answers found: false."
    ),
    responses={
        200: {"description": "The user's data."},
        401: {"description": "Missing, unknown or revoked key.", "content": _REFUSED},
        403: {"description": "Not an admin key.", "content": _REFUSED},
        503: {"description": "Storage unavailable; retry.", "content": _REFUSED},
    },
    tags=["privacy"],
    security=ADMIN_SECURITY,
)
def export(user_id: Annotated[str, Path(alias="userId", min_length=1)]) -> Response[UserExportResponse]:
    user_id = (router.current_event.get("pathParameters") or {}).get("userId") or user_id
    svc = services()
    held = export_user(user_id, usage=svc.store, segments=svc.segments, ledger=svc.ledger, inbox=svc.inbox)
    metrics.add_metric(name="UsersExported", unit="Count", value=1)
    logger.info(
        "user exported",
        extra={"found": held.found, "decisions": len(held.decisions), "merged_ids": len(held.merged)},
    )
    body = UserExportResponse(
        user_id=held.user_id,
        found=held.found,
        usage=held.usage,
        segments=held.segments,
        delivery=held.delivery,
        decisions=held.decisions,
        account=held.account,
        merged_into=held.merged_into,
        merged=[MergedIdExport.model_validate(m) for m in held.merged],
        in_app=list(held.in_app),
    )
    # The export holds contact details: never cached on the way.
    return Response(200, content_types.APPLICATION_JSON, body, headers={"Cache-Control": "no-store"})


def _unsubscribe(token: str, whole_channel: bool) -> Unsubscribed:
    svc = services()
    try:
        done = unsubscribe(
            token,
            whole_channel=whole_channel,
            secrets=svc.unsubscribe_secrets,
            ledger=svc.ledger,
            usage=svc.store,
            suppressions=svc.suppressions,
            now=clock.now(),
        )
    except StoreUnavailable as exc:
        raise _Unavailable(str(exc)) from exc
    metrics.add_metric(name="Unsubscribes", unit="Count", value=1)
    logger.info("unsubscribed", extra={"scope": done.scope})
    return done


def _wants_html() -> bool:
    event = router.current_event
    if event.http_method == "GET":
        return True
    accept = next((v for k, v in (event.headers or {}).items() if k.lower() == "accept"), "")
    return "text/html" in accept.lower()


def _words(done: Unsubscribed) -> tuple[str, str]:
    """What the scope is called on a page ("onboarding emails"), and the channel's noun ("emails")."""
    noun = CHANNEL_NOUNS.get(done.channel, f"{done.channel} messages")
    if done.scope == "all":
        return "all messages", "messages"
    if done.topic:
        return f"{done.topic.replace('_', ' ').replace('-', ' ')} {noun}", noun
    return f"all {noun}", noun


def _form(token: str, whole_channel: bool, label: str) -> str:
    """A button POSTing the link back (one-click body included). "?..." keeps the page's own path,
    whatever domain or base path the API is served under."""
    action = "?" + urlencode({"token": token, **({"all": "1"} if whole_channel else {})})
    return (
        f'<form method="post" action="{html.escape(action)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{html.escape(label)}</button></form>'
    )


def _confirm(would: Unsubscribed, token: str, whole_channel: bool) -> Response[Any]:
    what, noun = _words(would)
    forms = _form(token, whole_channel, "Unsubscribe")
    if would.topic:
        forms += _form(token, True, f"Unsubscribe from all {noun}")
    return _page(
        200,
        "Unsubscribe?",
        f"Unsubscribe from {what}?",
        "Press the button to stop these. Nothing changes until you do.",
        forms,
    )


def _answer(done: Unsubscribed, token: str) -> Response[Any]:
    if not _wants_html():
        return _json(200, UnsubscribeResponse(success=True, scope=done.scope))
    what, noun = _words(done)
    form = _form(token, True, f"Unsubscribe from all {noun}") if done.topic else ""
    return _page(
        200,
        "You're unsubscribed",
        f"You're unsubscribed from {what}",
        "You won't receive these any more. Clicking the link again changes nothing.",
        form,
    )


def _json(status: int, body: UnsubscribeResponse, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status, content_types.APPLICATION_JSON, body, headers={**PAGE_HEADERS, **(headers or {})})


def _page(
    status: int, title: str, heading: str, text: str, extra: str = "", headers: dict[str, str] | None = None
) -> Response[Any]:
    """A small page with everything inline; every text is escaped (extra is built escaped)."""
    body = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
        "color:#222;line-height:1.5}button{font:inherit;padding:.5rem 1rem;cursor:pointer}</style>"
        f"</head><body><h1>{html.escape(heading)}</h1><p>{html.escape(text)}</p>{extra}</body></html>\n"
    )
    return Response(status, content_types.TEXT_HTML, body, headers={**PAGE_HEADERS, **(headers or {})})


def refused(status: int, field: str, message: str, heading: str) -> Response[Any]:
    """An unsubscribe refused: a page for a browser, JSON for a mail client's one-click POST."""
    retry = {"Retry-After": "30"} if status == 503 else None
    if _wants_html():
        return _page(status, heading, heading, message, headers=retry)
    body = UnsubscribeResponse(success=False, errors=[ErrorItem(index=None, field=field, message=message)])
    return _json(status, body, retry)


@router.exception_handler(TokenInvalid)
def _invalid_token(exc: TokenInvalid) -> Response[Any]:
    metrics.add_metric(name="UnsubscribeRefused", unit="Count", value=1)
    logger.info("unsubscribe token refused", extra={"reason": str(exc)})
    return refused(400, "token", INVALID_LINK, "This link isn't valid")


@router.exception_handler([_Unavailable, SecretsUnavailable])
def _unavailable(exc: Exception) -> Response[Any]:
    logger.error("unsubscribe unavailable", extra={"detail": str(exc)})
    return refused(503, "", UNAVAILABLE, "Please try again shortly")
