"""The in-app channel's routes: a signed-in user's inbox, checklist and surveys, and the script
that shows them in the product's pages. Status codes for these routes are chosen here.

    GET  /v1/inbox                       the user's live messages (newest first, dismissed left out)
    POST /v1/inbox/{messageId}           {"action": "seen" | "clicked" | "dismissed"}
    POST /v1/inbox/{messageId}/answer    {"answer": "..."}: a survey's answer
    GET  /v1/checklist                   the onboarding checklist (milestones: done, next, progress)
    GET  /v1/nudge.js                    the script (public, cacheable)

Every route but the script takes a key (client or server, checked before routing like the tracking
routes', CORS included) AND the user's inbox token in `X-Nudge-User-Token` (nudge.domain.inbox):
the key says which product, the token which user. A key alone opens no inbox: a client key is
public. A missing, forged or expired token is 401.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from nudge import clock
from nudge.bootstrap.api import limits_from, services
from nudge.domain.inbox import TokenRefused, verify_inbox_token
from nudge.entrypoints.http.access import INBOX_SECURITY, USER_TOKEN_HEADER
from nudge.entrypoints.http.shapes import ErrorItem
from nudge.model.inapp import Checklist, InAppAction, InAppMessage
from nudge.observability import logger, metrics
from nudge.ports import Inbox
from nudge.services.inbox import (
    AnswerRefused,
    InboxPorts,
    NotInInbox,
    act,
    answer_survey,
    read_inbox,
    user_checklist,
)

INBOX_PATH = "/v1/inbox"
CHECKLIST_PATH = "/v1/checklist"
SCRIPT_PATH = "/v1/nudge.js"
SCRIPT = Path(__file__).with_name("static") / "nudge.js"
router = Router()  # type: ignore[no-untyped-call]
NOT_IN_INBOX = "no such message in this user's inbox (expired, erased, or another user's)"


class InboxResponse(BaseModel):
    success: bool = True
    messages: list[InAppMessage] = Field(default_factory=list)
    errors: list[ErrorItem] = Field(default_factory=list)


class MessageResponse(BaseModel):
    success: bool = True
    message: InAppMessage | None = None
    errors: list[ErrorItem] = Field(default_factory=list)


class ChecklistResponse(BaseModel):
    success: bool = True
    checklist: Checklist


class ActionRequest(BaseModel):
    action: InAppAction = Field(description="What the user did: seen, clicked or dismissed.")


class AnswerRequest(BaseModel):
    answer: str = Field(
        min_length=1, max_length=1000, description="One of the survey's choices, or free text."
    )


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    body = MessageResponse(success=False, errors=[ErrorItem(index=None, field=field, message=message)])
    return Response(status, content_types.APPLICATION_JSON, body, headers=headers)


_REFUSED: dict[str, Any] = {content_types.APPLICATION_JSON: {"model": MessageResponse}}
_COMMON: dict[int, OpenAPIResponse] = {
    401: {
        "description": "Missing or unknown key, or a missing, forged or expired user token.",
        "content": _REFUSED,
    },
    403: {
        "description": "The key's kind may not do this, or the page's origin is not allowed.",
        "content": _REFUSED,
    },
    413: {"description": "Body over the size limit.", "content": _REFUSED},
    503: {"description": "Storage unavailable; retry.", "content": _REFUSED},
}
_BAD_BODY: dict[int, OpenAPIResponse] = {
    400: {"description": "The body is not as documented; the error names the field.", "content": _REFUSED}
}


def _user() -> str:
    """The user the request's inbox token names (TokenRefused: 401)."""
    token = router.current_event.headers.get(USER_TOKEN_HEADER)
    return verify_inbox_token(services().user_token_secrets(), token, clock.now())


def _inbox() -> Inbox:
    inbox = services().inbox
    if inbox is None:
        raise RuntimeError("no in-app inbox configured")
    return inbox


def _ports() -> InboxPorts:
    svc = services()
    return InboxPorts(inbox=_inbox(), usage=svc.store, plan=svc.plan, limits=limits_from(svc.settings))


def _message_id() -> str:
    # API Gateway passes the decoded id in pathParameters; the matched path may be still encoded.
    return str((router.current_event.get("pathParameters") or {}).get("messageId") or "")


@router.exception_handler(TokenRefused)
def _token_refused(exc: TokenRefused) -> Response[Any]:
    metrics.add_metric(name="InboxTokenRefused", unit="Count", value=1)
    logger.info("inbox token refused")
    return _error(401, USER_TOKEN_HEADER, str(exc), {"WWW-Authenticate": 'NudgeUserToken realm="inbox"'})


@router.exception_handler(NotInInbox)
def _not_in_inbox(exc: NotInInbox) -> Response[Any]:
    return _error(
        404, "messageId", "no such message in this user's inbox (expired, erased, or another user's)"
    )


@router.exception_handler(AnswerRefused)
def _answer_refused(exc: AnswerRefused) -> Response[Any]:
    metrics.add_metric(name="SurveyAnswersRefused", unit="Count", value=1)
    return _error(400, exc.field, exc.message)


@router.get(
    INBOX_PATH,
    summary="The signed-in user's in-app messages",
    responses={200: {"description": "Live messages, newest first (dismissed ones left out)."}, **_COMMON},
    tags=["in-app"],
    security=INBOX_SECURITY,
)
def inbox() -> Response[InboxResponse]:
    messages = read_inbox(_inbox(), _user(), clock.now())
    return Response(
        200, content_types.APPLICATION_JSON, InboxResponse(messages=messages), {"Cache-Control": "no-store"}
    )


@router.post(
    f"{INBOX_PATH}/<messageId>",
    summary="Record that the user saw, clicked or dismissed a message (folds back as an event)",
    responses={
        200: {"description": "Recorded: the event in_app_<action> counted once per message and action."},
        404: {"description": "Not a live message of this user.", "content": _REFUSED},
        **_BAD_BODY,
        **_COMMON,
    },
    tags=["in-app"],
    security=INBOX_SECURITY,
)
def act_on_message(
    message_id: Annotated[str, PathParam(alias="messageId", min_length=1, max_length=200)],
    request: Annotated[ActionRequest, Body()],
) -> Response[MessageResponse]:
    user = _user()
    done = act(_ports(), user, _message_id() or message_id, request.action, clock.now())
    metrics.add_metric(name="InAppActions", unit="Count", value=1)
    return Response(200, content_types.APPLICATION_JSON, MessageResponse(message=done))


@router.post(
    f"{INBOX_PATH}/<messageId>/answer",
    summary="Answer a survey (lands as the event survey_answered, the answer in its property)",
    responses={
        200: {"description": "Recorded."},
        400: {
            "description": (
                "Not this user's live survey (expired, another user's, answered) or an answer it "
                "does not take; the error names which."
            ),
            "content": _REFUSED,
        },
        **_COMMON,
    },
    tags=["in-app"],
    security=INBOX_SECURITY,
)
def answer(
    message_id: Annotated[str, PathParam(alias="messageId", min_length=1, max_length=200)],
    request: Annotated[AnswerRequest, Body()],
) -> Response[MessageResponse]:
    user = _user()
    done = answer_survey(_ports(), user, _message_id() or message_id, request.answer, clock.now())
    metrics.add_metric(name="SurveyAnswers", unit="Count", value=1)
    return Response(200, content_types.APPLICATION_JSON, MessageResponse(message=done))


@router.get(
    CHECKLIST_PATH,
    summary="The signed-in user's onboarding checklist (the milestones: done, next, progress)",
    responses={200: {"description": "The checklist."}, **_COMMON},
    tags=["in-app"],
    security=INBOX_SECURITY,
)
def checklist() -> Response[ChecklistResponse]:
    svc = services()
    found = user_checklist(svc.store, svc.plan, _user())
    return Response(
        200, content_types.APPLICATION_JSON, ChecklistResponse(checklist=found), {"Cache-Control": "no-store"}
    )


@cache
def _script_text() -> str:
    return SCRIPT.read_text(encoding="utf-8")


@router.get(
    SCRIPT_PATH,
    summary="The in-app script: one script tag renders the inbox, checklist and surveys",
    responses={
        200: {"description": "JavaScript.", "content": {"text/javascript": {"schema": {"type": "string"}}}}
    },
    tags=["in-app"],
)
def script() -> Response[str]:
    return Response(
        200,
        "text/javascript; charset=utf-8",
        _script_text(),
        {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
