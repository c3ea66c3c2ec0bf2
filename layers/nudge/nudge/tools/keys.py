"""`nudge keys create|list|revoke|user-token`: the API keys in SSM, one SecureString per key under
/nudge/<stage>/keys/<key_id> holding its record (nudge.domain.keys: kind, SHA-256, origins, rate
limit, label, creation time). The key itself is printed once, at creation, and stored nowhere.

Rotation with overlap: create the new key, put it in the apps, revoke the old one; `list` shows both
meanwhile. A revoked key stops working within the API's cache age (a minute at most).
`--endpoint-url` points the commands at another SSM (the local stack's moto server).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3

from nudge.domain.inbox import inbox_token
from nudge.domain.keys import (
    KeyKind,
    KeyRecord,
    KeyRecordError,
    new_record,
    normalize_origin,
    user_token,
)
from nudge.domain.tokens import parse_secrets
from nudge.model.limits import INBOX_TOKEN_MAX_LIFETIME_SECONDS
from nudge.services.auth import load_records
from nudge.tools.args import positive

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient

KEY_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, 43 characters


def keys_path(stage: str) -> str:
    return f"/nudge/{stage}/keys"


def user_token_secret_param(stage: str) -> str:
    return f"/nudge/{stage}/user-token-secret"


def new_key_id(kind: KeyKind) -> str:
    return f"{kind.value}-{secrets.token_hex(4)}"


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def put_record(ssm: SSMClient, path: str, record: KeyRecord, *, overwrite: bool = False) -> None:
    ssm.put_parameter(
        Name=f"{path}/{record.key_id}",
        Value=record.to_json(),
        Type="SecureString",
        Overwrite=overwrite,
        Description=f"nudge {record.kind.value} key {record.label}"[:1024],
    )


def read_records(ssm: SSMClient, path: str) -> tuple[list[KeyRecord], list[str]]:
    """The records under `path`, and problems with the ones that could not be read."""
    raw: dict[str, str] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=path, Recursive=False, WithDecryption=True
    ):
        for parameter in page.get("Parameters", []):
            raw[parameter["Name"].rpartition("/")[2]] = parameter["Value"]
    loaded = load_records(raw)
    return list(loaded.records), list(loaded.unreadable)


def delete_record(ssm: SSMClient, path: str, key_id: str) -> bool:
    """Whether a key was there to delete."""
    try:
        ssm.delete_parameter(Name=f"{path}/{key_id}")
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def create_key(
    ssm: SSMClient,
    path: str,
    kind: KeyKind,
    *,
    now: datetime,
    origins: Sequence[str] = (),
    rate_limit: int | None = None,
    label: str = "",
) -> tuple[str, KeyRecord]:
    """A new random key and its stored record; the key is returned once and kept nowhere."""
    key = new_key()
    record = new_record(
        new_key_id(kind), kind, key, created_at=now, origins=origins, rate_limit=rate_limit, label=label
    )
    put_record(ssm, path, record)
    return key, record


# -- the command


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="Create, list and revoke API keys (client, server, admin); make a test user token.",
        description=(
            "API keys live in SSM, one SecureString per key under /nudge/<stage>/keys/, stored as "
            "their SHA-256 with their kind, allowed origins and rate limit. client keys (browsers, "
            "apps) may send events from the origins listed, without sensitive traits unless a user "
            "token comes with them; server keys may send everything; admin keys may erase and "
            "export users, and send nothing. A revoked key stops working within a minute."
        ),
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="{create,list,revoke,user-token}")

    create = sub.add_parser("create", help="Create a key and print it (once: it is stored hashed).")
    create.add_argument("--kind", required=True, choices=[k.value for k in KeyKind])
    create.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="URL",
        help="client keys: a page origin allowed to use it (https://app.example.com), repeatable; '*' any",
    )
    create.add_argument(
        "--rate-limit", type=positive, default=None, metavar="N", help="client keys: messages per second"
    )
    create.add_argument("--label", default="", help="what the key is for (shown by list)")
    create.set_defaults(run=run_create)

    listing = sub.add_parser("list", help="The live keys: id, kind, label, origins, created (never the key).")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)

    revoke = sub.add_parser("revoke", help="Delete a key: it stops working within a minute.")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=run_revoke)

    token = sub.add_parser(
        "user-token",
        help="Print a user token for USER_ID (what your server computes), for testing.",
        description=(
            "The user token a client key's message carries in context.userToken to set sensitive "
            "traits: hex HMAC-SHA256 of the user id with the first user-token secret in SSM "
            "(/nudge/<stage>/user-token-secret). Your server computes it for the signed-in user."
        ),
    )
    token.add_argument("user_id", metavar="USER_ID")
    token.add_argument(
        "--inbox",
        type=positive,
        metavar="SECONDS",
        help="an inbox token for the in-app routes instead, expiring in SECONDS "
        f"(at most {INBOX_TOKEN_MAX_LIFETIME_SECONDS})",
    )
    token.set_defaults(run=run_user_token)

    for command in (create, listing, revoke, token):
        command.add_argument(
            "--stage",
            default=os.environ.get("NUDGE_STAGE", "dev"),
            help="the deployment stage (default $NUDGE_STAGE or dev); 'local' for the local stack",
        )
        command.add_argument(
            "--endpoint-url",
            default=None,
            metavar="URL",
            help="another SSM endpoint, e.g. the local stack's moto server",
        )


def _ssm(args: argparse.Namespace) -> SSMClient:
    client: SSMClient = boto3.client("ssm", endpoint_url=args.endpoint_url)
    return client


def run_create(args: argparse.Namespace) -> int:
    kind = KeyKind(args.kind)
    if kind is not KeyKind.CLIENT and (args.origin or args.rate_limit is not None):
        print("nudge keys create: --origin and --rate-limit are for client keys only", file=sys.stderr)
        return 2
    try:
        origins = [normalize_origin(o) for o in args.origin]
    except KeyRecordError as exc:
        print(f"nudge keys create: {exc}", file=sys.stderr)
        return 2
    if kind is KeyKind.CLIENT and not origins:
        print("note: no --origin: pages can't use this key (apps and servers can)", file=sys.stderr)
    key, record = create_key(
        _ssm(args),
        keys_path(args.stage),
        kind,
        now=datetime.now(UTC),
        origins=origins,
        rate_limit=args.rate_limit,
        label=args.label,
    )
    print(f"Created {record.kind.value} key {record.key_id}. The key (shown once, stored hashed):")
    print(key)
    return 0


def _row(record: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "kind": record.kind.value,
        "label": record.label,
        "origins": list(record.origins),
        "rate_limit": record.limit if record.kind is KeyKind.CLIENT else None,
        "created_at": record.created_at,
        "sha256_prefix": record.sha256[:8],  # enough to tell keys apart, never the hash
    }


def run_list(args: argparse.Namespace) -> int:
    records, problems = read_records(_ssm(args), keys_path(args.stage))
    rows = [_row(r) for r in sorted(records, key=lambda r: (r.created_at, r.key_id))]
    if args.json:
        print(json.dumps({"keys": rows, "unreadable": problems}, indent=2))
    else:
        for row in rows:
            origins = ",".join(row["origins"]) or "-"
            print(
                f"{row['key_id']:<22} {row['kind']:<7} {row['created_at'][:19]:<20} "
                f"{row['sha256_prefix']}…  origins={origins}  {row['label']}"
            )
        if not rows:
            print(f"no keys under {keys_path(args.stage)}")
    for problem in problems:
        print(f"unreadable: {problem}", file=sys.stderr)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    if not delete_record(_ssm(args), keys_path(args.stage), args.key_id):
        print(f"nudge keys revoke: no key {args.key_id} under {keys_path(args.stage)}", file=sys.stderr)
        return 1
    print(f"Revoked {args.key_id}: refused by the API within a minute.")
    return 0


def run_user_token(args: argparse.Namespace) -> int:
    ssm = _ssm(args)
    name = user_token_secret_param(args.stage)
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        print(f"nudge keys user-token: no secret at {name}; create it first", file=sys.stderr)
        return 1
    signing = parse_secrets(value)
    if not signing:
        print(f"nudge keys user-token: {name} is empty", file=sys.stderr)
        return 1
    if args.inbox is not None:
        if args.inbox > INBOX_TOKEN_MAX_LIFETIME_SECONDS:
            print(
                f"nudge keys user-token: --inbox is at most {INBOX_TOKEN_MAX_LIFETIME_SECONDS} seconds",
                file=sys.stderr,
            )
            return 2
        expires = datetime.now(UTC) + timedelta(seconds=args.inbox)
        print(inbox_token(signing[0], args.user_id, expires))
        return 0
    print(user_token(signing[0], args.user_id))
    return 0
