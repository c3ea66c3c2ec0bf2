"""Which key kind each route needs: the table fails closed, and the OpenAPI document says the same."""

from __future__ import annotations

import json

import pytest

from nudge.domain.keys import Scope
from nudge.entrypoints.http.access import inbox_route, scope_of
from nudge.entrypoints.http.ingest_api import PUBLIC_PATHS, openapi_json
from nudge.entrypoints.http.sdk_settings import settings_key


@pytest.mark.parametrize(
    "path",
    [
        *("/v1/track", "/v1/t", "/v1/alias", "/v1/a", "/v1/b", "/v1/projects/k/settings"),
        *("/v1/inbox", "/v1/inbox/m1", "/v1/inbox/m1/answer", "/v1/checklist"),
    ],
)
def test_the_tracking_routes_and_the_sdk_settings_take_ingest_keys(path: str) -> None:
    assert scope_of(path) is Scope.INGEST


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/u1",
        "/v1/users/u1/export",
        # A path the table does not know (a stage prefix in front of erasure, a route added later)
        # needs an admin key, so an ingest key can never reach what routing might still serve.
        "/dev/v1/users/u1",
        "/v1/something-new",
    ],
)
def test_everything_else_needs_an_admin_key(path: str) -> None:
    assert scope_of(path) is Scope.ADMIN


DOCUMENT = json.loads(openapi_json())
OPERATIONS = [(method, path) for path, ops in DOCUMENT["paths"].items() for method in ops]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_the_openapi_document_declares_the_key_each_route_checks(method: str, path: str) -> None:
    declared = {
        name for requirement in DOCUMENT["paths"][path][method].get("security", []) for name in requirement
    }
    sample = path.replace("{userId}", "u1").replace("{writeKey}", "k").replace("{messageId}", "m1")
    if sample in PUBLIC_PATHS or settings_key(sample) is not None:
        # No header key: a signed token, or the key in the path (checked as such before routing).
        assert declared == set()
    elif inbox_route(sample):
        # A key and the user's token, both in each alternative.
        assert scope_of(sample) is Scope.INGEST
        requirements = DOCUMENT["paths"][path][method]["security"]
        assert all("userToken" in r for r in requirements)
        assert declared == {"writeKey", "writeKeyBearer", "userToken"}
    elif scope_of(sample) is Scope.INGEST:
        assert declared == {"writeKey", "writeKeyBearer"}
    else:
        assert declared == {"adminKey", "adminKeyBearer"}
