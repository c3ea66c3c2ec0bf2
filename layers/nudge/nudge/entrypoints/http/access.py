"""Which key kind each route needs, and the CORS answers, decided per key by the API itself (API
Gateway's static CORS settings cannot vary by key, so the HTTP API has none).

    ingest (client or server key): the tracking routes below, long and short, and the SDK settings;
                                   the in-app routes (/v1/inbox..., /v1/checklist), which also need
                                   the user's token (entrypoints/http/inbox_api.py)
    admin (admin key):             DELETE /v1/users/{id} (erasure), GET /v1/users/{id}/export
    none:                          the OpenAPI document, unsubscribe links (their token is the
                                   credential), the in-app script /v1/nudge.js

CORS: a preflight carries no key, so it is granted when some live client key allows the requesting
origin; the request that follows is judged by its own key: a client key listing the origin (or `*`)
is answered with `Access-Control-Allow-Origin: <origin>`, anything else is refused without a grant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nudge.domain.keys import Scope
from nudge.entrypoints.http.sdk_settings import settings_key

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme

# Every tracking route, long and short (/v1/a and /v1/alias included: alias is part of Segment's
# API, whichever module serves it).
INGEST_PATHS = frozenset(
    {
        *("/v1/track", "/v1/t", "/v1/page", "/v1/p", "/v1/screen", "/v1/s"),
        *("/v1/identify", "/v1/i", "/v1/group", "/v1/g", "/v1/alias", "/v1/a"),
        *("/v1/batch", "/v1/b"),
    }
)

ALLOW_METHODS = "POST, GET, OPTIONS"
# The in-app routes' user token travels in its own header (nudge.domain.inbox).
USER_TOKEN_HEADER = "x-nudge-user-token"  # noqa: S105 - a header's name
# The in-app routes (entrypoints/http/inbox_api.py): a key and the user's token; pages call them.
INBOX_PREFIX = "/v1/inbox"
CHECKLIST_PATH = "/v1/checklist"
ALLOW_HEADERS = "Content-Type, Authorization, Content-Encoding, X-Nudge-User-Token"
# What a page may read of an answer beyond the simple headers: analytics-next waits for
# x-ratelimit-reset after a 429.
EXPOSE_HEADERS = "Retry-After, x-ratelimit-reset"
PREFLIGHT_MAX_AGE_SECONDS = 600


def security_schemes() -> dict[str, SecurityScheme]:
    """The OpenAPI document says which key each route takes, as the header can carry it (the body's
    writeKey, which the browser and mobile SDKs send, is beyond what OpenAPI can say). The key kind
    is in the scheme's name: a client or server key for the tracking routes, an admin key for the rest.
    """
    # Imported here, the one place: Powertools' OpenAPI models build about sixty pydantic models at
    # import, which only the OpenAPI document needs (Powertools itself imports them only to build
    # it); at the top of this module they were a third of the ingest function's cold start.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBase, HTTPBearer

    return {
        "writeKey": HTTPBase(
            scheme="basic",
            description="A server or client write key as the Basic username, the password empty (Segment's "
            "way); or the body's `writeKey`.",
        ),
        "writeKeyBearer": HTTPBearer(description="A server or client write key as a Bearer token."),
        "adminKey": HTTPBase(
            scheme="basic", description="An admin key as the Basic username, the password empty."
        ),
        "adminKeyBearer": HTTPBearer(description="An admin key as a Bearer token."),
        "userToken": APIKey(
            name="X-Nudge-User-Token",
            **{"in": APIKeyIn.header},
            description="The signed-in user's inbox token, `<base64url user id>.<expiry>.<signature>`, "
            "signed by the product's server (README, In-app messages); with a client or server key.",
        ),
    }


INGEST_SECURITY: list[dict[str, list[str]]] = [{"writeKey": []}, {"writeKeyBearer": []}]
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}, {"adminKeyBearer": []}]
# Both at once: a key (which product) and the user's token (which user).
INBOX_SECURITY: list[dict[str, list[str]]] = [
    {"writeKey": [], "userToken": []},
    {"writeKeyBearer": [], "userToken": []},
]


def scope_of(path: str) -> Scope:
    """Ingest for the routes a page or SDK calls; admin for everything else, so a path this table
    does not know (a stage prefix, a new route) fails closed for ingest keys."""
    return Scope.INGEST if cors_route(path) else Scope.ADMIN


def cors_route(path: str) -> bool:
    """Routes a page may call: the tracking routes and the settings document analytics-next fetches."""
    return path in INGEST_PATHS or settings_key(path) is not None or inbox_route(path)


def inbox_route(path: str) -> bool:
    """The in-app routes but the script (which is public): a key and a user token."""
    return path in (INBOX_PREFIX, CHECKLIST_PATH) or path.startswith(INBOX_PREFIX + "/")


def granted(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        "Vary": "Origin",
    }


def preflight_granted(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        "Vary": "Origin",
    }
