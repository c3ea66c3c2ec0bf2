"""The process environment the local stack runs in, and the local names it sets there.

``LocalStack.start`` sets ``stack_environment`` (boto3 pointed at the moto server with fake
credentials, Powertools, the table and parameter names nudge.settings reads), then what
template.yaml gives its functions (``function_environment``: queue URLs, topic ARNs, parameter
defaults, resolved to the local resources). Both go through ``patched_environ``, which restores
every variable when the stack stops. Worker containers copy the result when they start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from nudge.tools.local.aws import REGION
from nudge.tools.local.template import load_template

KEYS_PATH = "/nudge/local/keys"
# Keys are read again at most this often: a key revoked with `nudge keys revoke --stage local`
# stops working a second later (AWS: a minute).
KEYS_MAX_AGE_SECONDS = 1
USAGE_TABLE = "nudge-local-usage"
LEDGER_TABLE = "nudge-local-ledger"
RATE_LIMIT_TABLE = "nudge-local-rate-limits"
SUPPRESSION_TABLE = "nudge-local-suppression"
UNSUBSCRIBE_SECRET_PARAM = "/nudge/local/unsubscribe-secret"  # noqa: S105 - a parameter name
SUPPRESSION_SECRET_PARAM = "/nudge/local/suppression-secret"  # noqa: S105 - a parameter name
USER_TOKEN_SECRET_PARAM = "/nudge/local/user-token-secret"  # noqa: S105 - a parameter name
# Each destination's secret (rules/destinations.yaml) is `<path>/<id>` in the stack's SSM.
DESTINATIONS_PATH = "/nudge/local/destinations"
# Template parameters the local stack sets rather than taking their Default, as
# `sam deploy --parameter-overrides` would. DueShards: the due index spreads a day's re-checks
# over 16 partitions in DynamoDB, but moto has no partitions and answers each index Query by
# reading the whole table, so the sweep's 16 queries per day cost 16 table reads for nothing.
# SmsEnabled: moto's SNS takes SMS (the outbox shows them); deployed, it is the operator's choice.
LOCAL_PARAMETERS = {"DueShards": "1", "SmsEnabled": "true"}


def stack_environment(
    endpoint_url: str, *, api_url: str, log_level: str, rules_dir: Path
) -> dict[str, str | None]:
    """What the stack sets itself (None: unset), whatever the template says: boto3 talks to
    `endpoint_url` only, Powertools logs at `log_level`, links point at `api_url`."""
    return {
        # boto3 (>= 1.28) sends every service to this URL: nothing can reach real AWS.
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any credentials
        # Real credentials in the shell must not be picked up, even by accident.
        "AWS_SESSION_TOKEN": None,
        "AWS_SECURITY_TOKEN": None,
        "AWS_PROFILE": None,
        "POWERTOOLS_TRACE_DISABLED": "1",
        # One name for every function: local containers serve them all from one process.
        "POWERTOOLS_SERVICE_NAME": "nudge-local",
        "POWERTOOLS_METRICS_NAMESPACE": "Nudge",
        # Not POWERTOOLS_METRICS_DISABLED: Powertools 3.x then never clears its metric set,
        # which grows with every request and is printed anyway each 100 values. The EMF
        # lines go where Lambda's stdout goes: the terminal, or `function_logs`.
        "POWERTOOLS_METRICS_DISABLED": None,
        "POWERTOOLS_LOG_LEVEL": log_level,
        "NUDGE_USAGE_TABLE": USAGE_TABLE,
        "NUDGE_LEDGER_TABLE": LEDGER_TABLE,
        "NUDGE_RATE_LIMIT_TABLE": RATE_LIMIT_TABLE,
        "NUDGE_UNSUBSCRIBE_SECRET_PARAM": UNSUBSCRIBE_SECRET_PARAM,
        # Links in local messages point at the local API: the address `nudge serve` really listens on.
        "NUDGE_UNSUBSCRIBE_URL": f"{api_url}/v1/unsubscribe",
        "NUDGE_SUPPRESSION_TABLE": SUPPRESSION_TABLE,
        "NUDGE_SUPPRESSION_SECRET_PARAM": SUPPRESSION_SECRET_PARAM,
        "NUDGE_KEYS_PATH": KEYS_PATH,
        "NUDGE_KEYS_MAX_AGE_SECONDS": str(KEYS_MAX_AGE_SECONDS),
        "NUDGE_USER_TOKEN_SECRET_PARAM": USER_TOKEN_SECRET_PARAM,
        "NUDGE_RULES_DIR": str(rules_dir),
        "NUDGE_DESTINATIONS_PATH": DESTINATIONS_PATH,
        # Local receivers listen on plain http on localhost; deployed, webhooks go over https only.
        "NUDGE_WEBHOOK_ALLOW_LOCAL_HTTP": "true",
    }


def function_environment(
    template_path: Path, functions: Sequence[str], refs: Mapping[str, str], fixed: Mapping[str, object]
) -> dict[str, str]:
    """The variables the template gives `functions` (Globals, then each function's own) that the
    stack does not set itself (`fixed`), with `!Ref` resolved through `refs` (logical id -> local
    value) or a parameter's Default. Values the stack can't resolve (`!Sub` of a stage name) are
    left out: the stack sets those itself.

    Local containers serve every function, so they share one environment: two functions wanting
    different values for one variable is an error here rather than a silent pick.
    """

    template = load_template(template_path)
    parameters = template.get("Parameters") or {}
    globals_vars = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}

    def resolve(value: object) -> str | None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = str(value["Ref"])
            if name in refs:
                return refs[name]
            default = (parameters.get(name) or {}).get("Default")
            return None if default is None else str(default)
        return None

    resolved: dict[str, str] = {}
    owner: dict[str, str] = {}
    for logical_id in functions:
        props = template["Resources"][logical_id].get("Properties") or {}
        variables = {**globals_vars, **((props.get("Environment") or {}).get("Variables") or {})}
        for name, raw in variables.items():
            if name in fixed:
                continue
            value = resolve(raw)
            if value is None:
                continue
            if name in resolved and resolved[name] != value:
                raise ValueError(
                    f"{template_path}: {owner[name]} and {logical_id} set {name} differently; local "
                    "containers share one environment"
                )
            resolved[name], owner[name] = value, logical_id
    return resolved


@contextmanager
def patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set `values` in os.environ (None: unset) for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
