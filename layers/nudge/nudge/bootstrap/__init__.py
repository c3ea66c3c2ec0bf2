"""The one setup root: what each function kind needs, built once per container from settings.

One module per kind, so a function imports only the adapters it runs:
- `bootstrap.api.services()`: the ingest and privacy HTTP APIs (usage store, write keys, ledger, secrets);
- `bootstrap.rules.wire()`: the evaluate and sweep functions (rules, stores, decision queue, metrics);
- `bootstrap.dispatch.wire_dispatch()`: the dispatch function (rules, ledger, the channel queues);
- `bootstrap.deliver.wire_deliver(channel)`: one action function (email, notify or escalate);
- `bootstrap.cs.aws_repository()`: the CS view on the deployed tables (`nudge escalations`);
- `bootstrap.shared`: what the sending, feedback and API kinds share (the ledger, the suppression
  list, secrets from SSM), apart so that the other functions do not import them at cold start.

A bad rule file or a missing setting fails here, at cold start, with every problem logged. Only
this package (and tools/) reads settings and makes boto3 clients; `reset()` forgets what was
built, for tests and for the local stack, which changes the environment between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

from nudge.adapters.dynamo import codec
from nudge.settings import Settings, get_settings

T = TypeVar("T")

# How to forget what built_once made, so reset() needs no import of every kind's module.
_forget: list[Callable[[], None]] = []


def built_once(build: Callable[[], T]) -> Callable[[], T]:
    """`build`, run on the first call only (once per container); reset() forgets the result."""
    cached = lru_cache(maxsize=1)(build)
    _forget.append(cached.cache_clear)
    return cached


def reset() -> None:
    """Forget the settings and everything built from them: the next call builds afresh."""
    get_settings.cache_clear()
    for forget in _forget:
        forget()


def configured() -> Settings:
    """The settings, with what they set process-wide applied: the layout state blobs are written in."""
    settings = get_settings()
    codec.write_format(settings.state_format)
    return settings


def state_ttl(settings: Settings) -> timedelta:
    """How long a user's items outlive their last write (DynamoDB TTL): every store writing one."""
    return timedelta(days=settings.state_ttl_days)
