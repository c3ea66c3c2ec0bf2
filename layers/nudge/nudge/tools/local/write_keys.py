"""The keys the local stack accepts, from the environment (comma-separated lists):

- ``NUDGE_WRITE_KEYS``: server keys (default ``nudge-local-write-key``), as before kinds existed;
- ``NUDGE_CLIENT_KEYS``: client keys (default ``nudge-local-client-key``), usable from the origins in
  ``NUDGE_ALLOWED_ORIGINS`` (default any: ``*``);
- ``NUDGE_ADMIN_KEYS``: admin keys (default ``nudge-local-admin-key``), for erasure and export;
- ``NUDGE_USER_TOKEN_SECRET``: what client user tokens are signed with (default
  ``nudge-local-user-token-secret``);
- ``NUDGE_LOCAL_DESTINATIONS``: ``id=secret`` pairs, each destination's secret (none by default).

The stack stores them hashed, as `nudge keys create` does in AWS. Send a key as the HTTP Basic
username (Segment SDKs do), as ``Authorization: Bearer <key>``, or as the body's ``writeKey``.

Standard library only: ``nudge serve --help`` reads these names, and the CLI must start without
importing moto.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WRITE_KEY = "nudge-local-write-key"
DEFAULT_CLIENT_KEY = "nudge-local-client-key"
DEFAULT_ADMIN_KEY = "nudge-local-admin-key"
DEFAULT_USER_TOKEN_SECRET = "nudge-local-user-token-secret"  # noqa: S105 - documented local default
WRITE_KEYS_ENV = "NUDGE_WRITE_KEYS"
CLIENT_KEYS_ENV = "NUDGE_CLIENT_KEYS"
ADMIN_KEYS_ENV = "NUDGE_ADMIN_KEYS"
ALLOWED_ORIGINS_ENV = "NUDGE_ALLOWED_ORIGINS"
USER_TOKEN_SECRET_ENV = "NUDGE_USER_TOKEN_SECRET"  # noqa: S105 - a variable name
DEFAULTS = {
    WRITE_KEYS_ENV: DEFAULT_WRITE_KEY,
    CLIENT_KEYS_ENV: DEFAULT_CLIENT_KEY,
    ADMIN_KEYS_ENV: DEFAULT_ADMIN_KEY,
}


def _listed(environ: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in environ.get(name, "").split(",") if item.strip()]


def write_keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys in NUDGE_WRITE_KEYS, or [DEFAULT_WRITE_KEY] when it is unset or blank."""
    return _listed(environ if environ is not None else os.environ, WRITE_KEYS_ENV) or [DEFAULT_WRITE_KEY]


@dataclass(frozen=True)
class LocalKeys:
    server: tuple[str, ...]
    client: tuple[str, ...]
    admin: tuple[str, ...]
    origins: tuple[str, ...]  # where the client keys may be used from
    user_token_secret: str


def local_keys(
    environ: Mapping[str, str] | None = None,
    *,
    server: list[str] | None = None,
    client: list[str] | None = None,
    admin: list[str] | None = None,
    origins: list[str] | None = None,
    user_token_secret: str | None = None,
) -> LocalKeys:
    """What the stack accepts: the arguments given, else the environment, else the defaults."""
    env = environ if environ is not None else os.environ
    return LocalKeys(
        server=tuple(server if server is not None else write_keys_from_env(env)),
        client=tuple(client if client is not None else _listed(env, CLIENT_KEYS_ENV) or [DEFAULT_CLIENT_KEY]),
        admin=tuple(admin if admin is not None else _listed(env, ADMIN_KEYS_ENV) or [DEFAULT_ADMIN_KEY]),
        origins=tuple(origins if origins is not None else _listed(env, ALLOWED_ORIGINS_ENV) or ["*"]),
        user_token_secret=user_token_secret
        or env.get(USER_TOKEN_SECRET_ENV, "").strip()
        or DEFAULT_USER_TOKEN_SECRET,
    )


# `id=secret` pairs, comma-separated: each destination's SSM parameter (rules/destinations.yaml),
# put by the stack at start: a webhook's whsec_ secret, or a Slack stand-in's URL.
DESTINATIONS_ENV = "NUDGE_LOCAL_DESTINATIONS"


def destination_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """NUDGE_LOCAL_DESTINATIONS as {destination id: secret}; a pair without `=` is an error naming it."""
    found: dict[str, str] = {}
    for item in _listed(environ if environ is not None else os.environ, DESTINATIONS_ENV):
        name, sep, secret = item.partition("=")
        if not sep or not name.strip() or not secret.strip():
            raise ValueError(f"{DESTINATIONS_ENV}: '{name.strip()}' is not id=secret (e.g. crm=whsec_...)")
        found[name.strip()] = secret.strip()
    return found
