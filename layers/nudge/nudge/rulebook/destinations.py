"""rules/destinations.yaml: where Nudge posts outside email, push and SMS (optional file).

    destinations:
      - id: crm
        webhook: https://crm.acme.example/hooks/nudge   # signed JSON (Standard Webhooks)
      - id: cs_slack
        slack: true                                     # a Slack incoming webhook
    escalations: [cs_slack]                             # every escalation also goes to these

A webhook's URL is in the file, its signing secret (`whsec_...`) is not: it lives in the SSM
SecureString `/nudge/<stage>/destinations/<id>`. A Slack incoming-webhook URL *is* a credential
(anyone holding it can post to the channel), so for Slack the file names the destination only
and the URL is that parameter. Lint refuses anything that looks like a secret in the file:
credentials in a URL, a query parameter named like a key, a Slack hook URL, a `whsec_` value.

URLs are https. Plain http is accepted only for localhost (127.0.0.1, ::1), where a test or the
local stack runs its receiver; deployed, the webhook function refuses anything but https.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from nudge.rulebook.plan import NAME_PATTERN
from nudge.rulebook.yamlfile import RuleFileError, RuleProblem, YamlDoc, display_path, load_yaml, validate

DESTINATIONS_FILE = "destinations.yaml"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Query parameter names that carry credentials: they belong in SSM, not in a rule file.
_SECRET_WORDS = ("token", "secret", "key", "sig", "password", "auth", "credential")
_SLACK_HOOK_HOSTS = ("hooks.slack.com",)


class DestinationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    webhook: str | None = Field(
        default=None,
        description="https URL receiving signed JSON (Standard Webhooks); secret in SSM, never here.",
    )
    slack: bool = Field(
        default=False, description="A Slack incoming webhook; its URL (a credential) is in SSM."
    )


class DestinationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    destinations: list[DestinationSpec] = Field(default_factory=list)
    escalations: list[str] = Field(
        default_factory=list, description="Destinations that also receive every escalation case."
    )


Kind = Literal["webhook", "slack"]


@dataclass(frozen=True)
class Destination:
    id: str
    kind: Kind
    url: str = ""  # webhooks only; a Slack URL is read from SSM


@dataclass(frozen=True)
class Destinations:
    by_id: dict[str, Destination] = field(default_factory=dict)
    escalations: tuple[str, ...] = ()


def url_problem(url: str) -> str:
    """Why `url` may not be a webhook destination, or "" when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"'{url}' is not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "a webhook URL is https://host/path"
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        return "a webhook URL must be https (plain http only for localhost, in tests and the local stack)"
    if parts.username or parts.password:
        return "no credentials in a URL: the signing secret goes in SSM (/nudge/<stage>/destinations/<id>)"
    if host.endswith(_SLACK_HOOK_HOSTS):
        return "a Slack hook URL is a credential: use `slack: true` and put the URL in SSM"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in name.lower() for word in _SECRET_WORDS):
            return f"query parameter '{name}' looks like a credential: receivers verify the signature instead"
    return ""


def load_destinations(rules_dir: Path, problems: list[RuleProblem]) -> Destinations:
    """rules/destinations.yaml, checked; none when the file does not exist."""
    path = rules_dir / DESTINATIONS_FILE
    if not path.exists():
        return Destinations()
    try:
        doc = load_yaml(path, display_path(rules_dir, DESTINATIONS_FILE))
        spec = validate(doc, DestinationsFile)
    except RuleFileError as exc:
        problems.extend(exc.problems)
        return Destinations()
    return _checked(doc, spec, problems)


def _checked(doc: YamlDoc, spec: DestinationsFile, problems: list[RuleProblem]) -> Destinations:
    found: dict[str, Destination] = {}
    for index, d in enumerate(spec.destinations):
        loc: tuple[str | int, ...] = ("destinations", index)
        if d.id in found:
            problems.append(doc.problem((*loc, "id"), f"duplicate id '{d.id}'; ids must be unique"))
            continue
        if (d.webhook is None) == (not d.slack):
            problems.append(
                doc.problem(loc, "a destination is either `webhook: <https URL>` or `slack: true`")
            )
            continue
        if d.webhook is not None:
            if problem := url_problem(d.webhook):
                problems.append(doc.problem((*loc, "webhook"), problem))
                continue
            found[d.id] = Destination(d.id, "webhook", d.webhook)
        else:
            found[d.id] = Destination(d.id, "slack")
    if "whsec_" in repr(doc.data):
        problems.append(doc.problem((), "a signing secret (whsec_...) is in the file: move it to SSM"))
    for index, name in enumerate(spec.escalations):
        if name not in found:
            problems.append(doc.problem(("escalations", index), f"unknown destination '{name}'"))
    return Destinations(found, tuple(n for n in spec.escalations if n in found))
