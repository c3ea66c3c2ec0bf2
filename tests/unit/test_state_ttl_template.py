"""The state TTL as deployed: the template enables DynamoDB's TTL on the attribute the stores write,
and passes its StateTtlDays parameter to every function; one default everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudge.adapters.dynamo.usage import EXPIRES
from nudge.model.limits import STATE_TTL_DAYS
from nudge.settings import Settings
from nudge.tools.local.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path("template.yaml"))


def test_the_tables_holding_user_items_expire_them_on_the_attribute_the_stores_write() -> None:
    for table in ("UsageTable", "LedgerTable"):
        ttl = TEMPLATE["Resources"][table]["Properties"]["TimeToLiveSpecification"]
        assert ttl == {"AttributeName": EXPIRES, "Enabled": True}, table


def test_every_function_is_told_the_state_ttl_from_one_parameter_with_one_default() -> None:
    parameter = TEMPLATE["Parameters"]["StateTtlDays"]
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["NUDGE_STATE_TTL_DAYS"] == {"Ref": "StateTtlDays"}
    assert parameter["Default"] == STATE_TTL_DAYS == Settings().state_ttl_days == 730
    # No function overrides it with a value of its own.
    for name, resource in TEMPLATE["Resources"].items():
        own = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        assert "NUDGE_STATE_TTL_DAYS" not in own, name


def test_every_function_writes_state_blobs_in_the_format_one_parameter_chooses() -> None:
    parameter = TEMPLATE["Parameters"]["StateFormat"]
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["NUDGE_STATE_FORMAT"] == {"Ref": "StateFormat"}
    assert parameter["AllowedValues"] == ["0", "1", "2"]
    assert int(parameter["Default"]) == Settings().state_format == 2
    for name, resource in TEMPLATE["Resources"].items():
        own = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        assert "NUDGE_STATE_FORMAT" not in own, name
