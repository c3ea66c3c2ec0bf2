"""Which key kind each route needs: the table fails closed."""

from __future__ import annotations

import pytest

from nudge.domain.keys import Scope
from nudge.entrypoints.http.access import scope_of


@pytest.mark.parametrize(
    "path", ["/v1/track", "/v1/t", "/v1/alias", "/v1/a", "/v1/b", "/v1/projects/k/settings"]
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
