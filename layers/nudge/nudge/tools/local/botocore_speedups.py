"""botocore's per-call work that the local stack's calls need not repeat (``speed_up_botocore``).

With the calls to moto made in process (``moto_direct``) or over a pipe (``moto_relay``), botocore's
own work is most of what is left on the client side of each call. One piece of it gives the same
answer every time: the User-Agent header, built twice per call (when the request is made, then
again once the call's feature ids are known) from about 35 components, each sanitized character
by character: 7% of a DynamoDB call's CPU in process. It is now built once per client and set of
feature ids; the header is the same string as before (tests/unit/tools/test_botocore_speedups.py).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from botocore.context import get_context
from botocore.useragent import UserAgentString

_patch = threading.Lock()
# Per UserAgentString (one per client, as with_client_config copies it): feature ids -> header.
_built: weakref.WeakKeyDictionary[UserAgentString, dict[frozenset[str], str]] = weakref.WeakKeyDictionary()


def speed_up_botocore() -> None:
    """Idempotent; in the stack's process and in each of its containers."""
    with _patch:
        current = UserAgentString.to_string
        if getattr(current, "_nudge_local", False):
            return
        UserAgentString.to_string = _once_per_features(current)  # type: ignore[method-assign,assignment]


def _once_per_features(build: Callable[[UserAgentString], str]) -> Callable[[UserAgentString], str]:
    def to_string(self: UserAgentString) -> str:
        # What varies between calls of one client is the set of feature ids (the client's and the
        # call's context's, as UserAgentString._build_feature_metadata reads them); the rest is
        # fixed when the client is made.
        context = get_context()
        client = self._client_features or set()  # type: ignore[attr-defined]
        features = frozenset(client | (context.features if context is not None else set()))
        known = _built.get(self)
        if known is None:
            known = _built.setdefault(self, {})
        header = known.get(features)
        if header is None:
            header = known[features] = build(self)
        return header

    to_string._nudge_local = True  # type: ignore[attr-defined]
    to_string.__wrapped__ = build  # type: ignore[attr-defined]
    return to_string
