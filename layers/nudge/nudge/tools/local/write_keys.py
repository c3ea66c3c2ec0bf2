"""The write keys the local stack accepts, from ``NUDGE_WRITE_KEYS``.

The stack accepts the keys listed in the environment variable ``NUDGE_WRITE_KEYS``
(comma-separated, so a rotation can be tried locally); when it is unset or empty the one key is
``nudge-local-write-key`` (``DEFAULT_WRITE_KEY``). Send it as the HTTP Basic username, as Segment
SDKs do, or as ``Authorization: Bearer <key>``.

Standard library only: ``nudge serve --help`` reads these names, and the CLI must start without
importing moto.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_WRITE_KEY = "nudge-local-write-key"
WRITE_KEYS_ENV = "NUDGE_WRITE_KEYS"


def write_keys_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The keys in NUDGE_WRITE_KEYS, or [DEFAULT_WRITE_KEY] when it is unset or blank."""
    raw = (environ if environ is not None else os.environ).get(WRITE_KEYS_ENV, "")
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    return keys or [DEFAULT_WRITE_KEY]
