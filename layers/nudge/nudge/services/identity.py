"""Identity resolution for one ingest request: the profile each message lands on, and the profiles
that merge into it.

A message is about `userId`, or `anon:<anonymousId>` when it has no userId. A call carrying both
ids, or an alias (`previousId` -> `userId`), links the other id to the user: the linked profile's
history merges into the user's (nudge.domain.identity) and its record becomes a pointer to the
user, in the same atomic write, so later messages of that id land on the user. Reads follow
pointers (a second read for the profiles they point to, and on along a chain), so whatever came
first, the anonymous events or the link, the person ends as one profile.

Rules, as Segment's:
- an id already merged into one user stays with that user: a link to another is not made, and a
  warning names the field (the anonymousId of a shared device, say);
- an alias whose userId already points, through merges, at its previousId would make a cycle:
  the alias is refused (400), naming the fields, never the ids (which may be emails);
- an alias's previousId may have been a userId or an anonymousId (SDKs send either), so both
  profiles it may name are linked; but an alias sent with a client key (anyone may copy it) links
  the anonymous profile only, and a warning says so: a known user is merged from the server only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from nudge.model.messages import Alias, Message
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.ports import UsageStore

# Pointer chains grow one hop per alias of an already merged user; reads follow this many.
MAX_HOPS = 10
# Profiles one write may merge into one user (each is two items of a DynamoDB transaction, which
# holds 100): more in one request is a sender minting ids, and the rest wait for a later request.
MAX_ABSORBED = 25

CYCLE = "alias: userId is already merged into previousId; aliasing previousId to it would make a cycle"
CLIENT_ALIAS = (
    "a client key may only alias an anonymousId; send aliases of userIds from your server "
    "(accepted; previousId taken as an anonymousId only)"
)


@dataclass(frozen=True)
class Issue:
    """A problem with one message of the request, reported as {index, field, message}."""

    index: int
    field: str
    message: str


@dataclass
class Profile:
    """One person the request touches: their record as read, the profiles merging into them (each
    with its record as read, None when the id has none yet), and their messages."""

    user_id: str
    stored: Versioned[UserState] | None
    absorbed: dict[str, Versioned[UserState] | None] = field(default_factory=dict)
    messages: list[tuple[int, Message]] = field(default_factory=list)


@dataclass
class Resolution:
    profiles: dict[str, Profile]
    refused: list[Issue]
    warnings: list[Issue]


def read_profiles(store: UsageStore, keys: set[str]) -> dict[str, Versioned[UserState]]:
    """The records of `keys` and of every profile their pointers lead to (one read per hop)."""
    records: dict[str, Versioned[UserState]] = {}
    asked: set[str] = set()
    wanted = set(keys)
    for _ in range(MAX_HOPS):
        if not wanted:
            break
        asked |= wanted
        found = store.load_users(sorted(wanted))
        records.update(found)
        wanted = {r.value.merged_into for r in found.values() if r.value.merged_into} - asked
    return records


def resolve(messages: Sequence[tuple[int, Message]], store: UsageStore) -> Resolution:
    """Which profile each message lands on and what merges, from one read of the store."""
    keys = {m.identity for _, m in messages}
    keys |= {k for _, m in messages for src, tgt, _role in m.links() for k in (src, tgt)}
    records = read_profiles(store, keys)
    points = {k: r.value.merged_into for k, r in records.items() if r.value.merged_into}
    absorbed: dict[str, list[str]] = defaultdict(list)
    refused: list[Issue] = []
    warnings: list[Issue] = []
    kept: list[tuple[int, Message]] = []
    for index, message in messages:
        links = message.links()
        if isinstance(message, Alias) and any(src in _chain(points, tgt) for src, tgt, _ in links):
            refused.append(Issue(index, "previousId", CYCLE))
            continue
        kept.append((index, message))
        warned: set[str] = set()
        if isinstance(message, Alias) and message.anonymous_only:
            # Always said, whether or not previousId names a user: the answer tells a public key's
            # holder nothing about which users exist.
            warnings.append(Issue(index, "previousId", CLIENT_ALIAS))
        for src, tgt, role in links:
            into, other = _find(points, tgt), _find(points, src)
            if into == other:
                continue  # one person already: the same link again, or made another way
            # `other` brings along whatever it absorbed earlier in this request: each is two items
            # of the transaction, so they count against the limit too.
            if other != src or len(absorbed[into]) + 1 + len(absorbed.get(other, [])) > MAX_ABSORBED:
                if role not in warned:
                    warned.add(role)
                    warnings.append(Issue(index, role, _not_linked(role, other != src)))
                continue
            points[other] = into
            absorbed[into] += [other, *absorbed.pop(other, [])]
    profiles: dict[str, Profile] = {}
    for index, message in kept:
        key = _find(points, message.identity)
        profile = profiles.get(key)
        if profile is None:
            profile = profiles[key] = Profile(key, records.get(key))
            profile.absorbed = {k: records.get(k) for k in absorbed.get(key, [])}
        profile.messages.append((index, message))
    return Resolution(profiles, refused, warnings)


def _find(points: dict[str, str], key: str) -> str:
    for _ in range(MAX_HOPS + len(points)):
        if key not in points:
            return key
        key = points[key]
    return key


def _chain(points: dict[str, str], key: str) -> list[str]:
    """`key` and the profiles it points to, in order."""
    chain = [key]
    while chain[-1] in points and len(chain) <= MAX_HOPS + len(points):
        chain.append(points[chain[-1]])
    return chain


def _not_linked(role: str, taken: bool) -> str:
    if taken:
        return f"{role} already belongs to another user; it stays with that user (accepted, not linked)"
    return (
        f"{role} not linked: more than {MAX_ABSORBED} ids merge into one user in this request; "
        "send the rest in another request (accepted)"
    )
