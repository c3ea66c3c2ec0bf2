"""The security posture template.yaml promises (issue 6): every checkov skip carries its reason, the
facts those reasons rest on still hold (SSE-SQS on every queue, encryption and recovery on every
table, a retention on every log group), and each function has its own narrowly scoped IAM policy.
`make checkov` runs the scanner itself; these tests keep the skip list honest between scans."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

from nudge.tools.local.template import load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(REPO / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in RESOURCES.items() if res.get("Type") == kind}


FUNCTIONS = of_type("AWS::Serverless::Function")
QUEUES = of_type("AWS::SQS::Queue")
TABLES = of_type("AWS::DynamoDB::Table")
LOG_GROUPS = of_type("AWS::Logs::LogGroup")

# Statements allowed Resource "*": SMS publishing and the opt-out check name a phone number, not an
# ARN (granted only when the stack sends SMS: test_sns_publish_reaches_only_the_topics_and_endpoints_used).
STAR_RESOURCE_ALLOWED = {("NotifyFunction", "SmsPublish")}
# SAM policy templates a function may use (each scoped by its parameters).
POLICY_TEMPLATES_ALLOWED = {"SSMParameterReadPolicy"}


def skips() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, res in RESOURCES.items():
        for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip") or []:
            found.append((name, skip))
    return found


def test_the_skip_list_is_in_the_template() -> None:
    assert skips(), "template.yaml has no checkov skips: did the Metadata move?"


@pytest.mark.parametrize(("resource", "skip"), skips(), ids=lambda v: v if isinstance(v, str) else v["id"])
def test_every_checkov_skip_is_justified(resource: str, skip: dict[str, Any]) -> None:
    assert re.fullmatch(r"CKV_AWS_\d+", str(skip.get("id", ""))), f"{resource}: skip without a check id"
    comment = str(skip.get("comment") or "")
    assert len(comment.split()) >= 15, f"{resource} skips {skip['id']} without a written reason"


def test_no_check_is_skipped_for_the_whole_template() -> None:
    assert "checkov" not in (TEMPLATE.get("Metadata") or {})


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_every_queue_is_encrypted_with_sse_sqs(name: str) -> None:
    # The premise of every CKV_AWS_27 skip: SSE-SQS, which checkov does not recognise.
    props = QUEUES[name]["Properties"]
    assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, name


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_is_encrypted_and_recoverable(name: str) -> None:
    props = TABLES[name]["Properties"]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert TABLES[name].get("DeletionPolicy") == "Retain"


@pytest.mark.parametrize("name", sorted(LOG_GROUPS))
def test_every_log_group_has_a_retention(name: str) -> None:
    assert "RetentionInDays" in LOG_GROUPS[name]["Properties"], name


def test_functions_are_traced() -> None:
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"
    for name, fn in FUNCTIONS.items():
        assert fn["Properties"].get("Tracing", "Active") == "Active", name


def test_the_api_that_answers_exports_keeps_no_response_in_traces() -> None:
    # GET /v1/users/{id}/export answers a user's data; Powertools' Tracer would put it in X-Ray.
    variables = RESOURCES["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def statements(fn: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in fn["Properties"].get("Policies") or []:
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                if isinstance(statement, dict) and "Fn::If" in statement:
                    found.extend(s for s in statement["Fn::If"][1:] if isinstance(s, dict) and "Effect" in s)
                else:
                    found.append(statement)
    return found


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_has_its_own_scoped_policy(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    assert "Role" not in props, f"{name} shares a role: each function gets its own"
    policies = props.get("Policies") or []
    assert policies, f"{name} has no policy of its own"
    for policy in policies:
        if isinstance(policy, str):
            pytest.fail(f"{name} attaches managed policy {policy}: scope a statement instead")
        if "Statement" not in policy:
            assert set(policy) <= POLICY_TEMPLATES_ALLOWED, f"{name}: policy template {set(policy)}"
    for statement in statements(FUNCTIONS[name]):
        sid = statement.get("Sid", "?")
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert "*" not in action, f"{name}.{sid}: wildcard action {action}"
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if "*" in resources:
            assert (name, sid) in STAR_RESOURCE_ALLOWED, f"{name}.{sid}: Resource '*'"


def test_the_keyless_unsubscribe_routes_get_a_lower_throttle_than_the_rest() -> None:
    api = RESOURCES["IngestApi"]["Properties"]
    default = api["DefaultRouteSettings"]
    declared = {
        f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}"
        for fn in FUNCTIONS.values()
        for event in (fn["Properties"].get("Events") or {}).values()
        if event.get("Type") == "HttpApi"
    }
    for route in ("GET /v1/unsubscribe", "POST /v1/unsubscribe"):
        # A route key that names no declared route would fail the deploy (or throttle nothing)
        assert route in declared
        settings = api["RouteSettings"][route]
        assert settings["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
        assert settings["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"]
    assert set(api["RouteSettings"]) <= declared


# ------------------------------------------------------------------ sns:Publish and ingest concurrency

PUSH_APP = "arn:aws:sns:us-east-1:123456789012:app/GCM/acme"


def resolve(value: Any, parameters: dict[str, str]) -> Any:
    """The intrinsic functions the statements below use (Ref to a parameter, Sub, Join, Select, Split)."""
    if isinstance(value, dict) and len(value) == 1:
        [(name, args)] = value.items()
        if name == "Fn::Sub":
            return re.sub(r"\$\{(\w+)\}", lambda m: parameters.get(m[1], f"<{m[1]}>"), args)
        if name == "Ref":
            return parameters.get(args, f"<{args}>")
        if name == "Fn::Join":
            return args[0].join(str(resolve(part, parameters)) for part in args[1])
        if name == "Fn::Select":
            return resolve(args[1], parameters)[int(args[0])]
        if name == "Fn::Split":
            return str(resolve(args[1], parameters)).split(args[0])
    return value


def conditional_statements(fn: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Each statement of a function's policies with the condition it is granted under (None: always)."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in fn["Properties"].get("Policies") or []:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if "Fn::If" in statement:
                condition, granted, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, "a policy If must grant nothing otherwise"
                found.append((condition, granted))
            else:
                found.append((None, statement))
    return found


def publishes() -> list[tuple[str, str | None, str, list[Any]]]:
    """(function, condition, sid, resources) of every statement allowing sns:Publish."""
    found = []
    for name, fn in FUNCTIONS.items():
        for condition, statement in conditional_statements(fn):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "sns:Publish" in actions:
                resources = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                found.append((name, condition, statement["Sid"], resources))
    return found


def test_sns_publish_reaches_only_the_topics_and_endpoints_used() -> None:
    topics = set(of_type("AWS::SNS::Topic"))
    granted = {(fn, sid): (condition, resources) for fn, condition, sid, resources in publishes()}
    # The escalate function publishes to the CS notice topic, and nothing else
    assert granted.pop(("EscalateFunction", "NotifyCs")) == (None, [{"Ref": "CsNoticeTopic"}])
    assert "CsNoticeTopic" in topics
    # The notify function publishes to the push application's endpoints when there is one...
    condition, [endpoints] = granted.pop(("NotifyFunction", "PushPublish"))
    assert condition == "HasPushApplication"
    pattern = resolve(endpoints, {"PushApplicationArn": PUSH_APP})
    assert fnmatch.fnmatchcase("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/acme/5e3c8d2a-1b4f", pattern)
    for other in (
        "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/acme-staging/5e3c8d2a",
        "arn:aws:sns:us-east-1:123456789012:endpoint/APNS/acme/5e3c8d2a",
        "arn:aws:sns:us-east-1:123456789012:acme-alarms",
    ):
        assert not fnmatch.fnmatchcase(other, pattern), other
    # (CloudFormation checks Fn::Select's bounds whatever the condition: the default "" must resolve)
    resolve(endpoints, {"PushApplicationArn": ""})
    # ...and to phone numbers (Resource "*", the only way IAM grants an SMS) only when it sends SMS
    assert granted.pop(("NotifyFunction", "SmsPublish")) == ("HasSms", ["*"])
    assert TEMPLATE["Conditions"]["HasSms"] == {"Fn::Equals": [{"Ref": "SmsEnabled"}, "true"]}
    assert TEMPLATE["Parameters"]["SmsEnabled"]["Default"] == "false"
    # No other function may publish at all
    assert granted == {}


def test_the_push_application_parameter_takes_only_an_application_arn() -> None:
    # The endpoints' ARN is made from the application's by splitting at ":app/": anything else
    # (a topic's ARN) would give a pattern that matches nothing, or too much.
    pattern = re.compile(TEMPLATE["Parameters"]["PushApplicationArn"]["AllowedPattern"])
    for good in ("", PUSH_APP, "arn:aws-cn:sns:cn-north-1:123456789012:app/APNS_SANDBOX/acme.ios"):
        assert pattern.fullmatch(good), good
    for bad in (
        "arn:aws:sns:us-east-1:123456789012:acme-topic",
        "arn:aws:sns:us-east-1:123456789012:app/GCM/a/b",
        "*",
    ):
        assert not pattern.fullmatch(bad), bad


def test_the_notify_function_is_told_whether_the_stack_sends_sms() -> None:
    variables = RESOURCES["NotifyFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["NUDGE_SMS_ENABLED"] == {"Ref": "SmsEnabled"}


def test_ingest_has_reserved_concurrency_that_can_be_switched_off() -> None:
    parameter = TEMPLATE["Parameters"]["IngestReservedConcurrency"]
    reserved = RESOURCES["IngestFunction"]["Properties"]["ReservedConcurrentExecutions"]
    # Reserved by default; 0 (for new accounts, whose quota leaves nothing to reserve) sets none
    assert reserved == {
        "Fn::If": ["HasIngestReservation", {"Ref": "IngestReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert TEMPLATE["Conditions"]["HasIngestReservation"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "IngestReservedConcurrency"}, "0"]}]
    }
    assert parameter["MinValue"] == 0
    # The default serves the API's burst at up to 250 ms a request, and leaves most of a standard
    # account's 1,000 to the pipeline
    burst = RESOURCES["IngestApi"]["Properties"]["DefaultRouteSettings"]["ThrottlingBurstLimit"]
    assert burst / 4 <= parameter["Default"] <= 100
    # The queue consumers keep no reservation (throttled polls would push good messages to DLQs)
    for name in ("DispatchFunction", "EmailFunction", "NotifyFunction", "EscalateFunction"):
        assert "ReservedConcurrentExecutions" not in RESOURCES[name]["Properties"], name


# ------------------------------------------------------------------ the suppression list and links


def _names_suppression_table(resource: Any) -> bool:
    return resource == {"Fn::GetAtt": ["SuppressionTable", "Arn"]}


def test_no_function_may_delete_from_the_suppression_list() -> None:
    # The list must outlive erasure: the functions that read it Query, the unsubscribe route and SES
    # feedback add (UpdateItem), and nothing may delete or overwrite an item there
    granted: dict[str, set[str]] = {}
    for name, function in FUNCTIONS.items():
        for statement in statements(function):
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if any(_names_suppression_table(r) for r in resources):
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                granted.setdefault(name, set()).update(actions)
    assert granted == {
        "IngestFunction": {"dynamodb:UpdateItem"},
        "DispatchFunction": {"dynamodb:Query"},
        "EmailFunction": {"dynamodb:Query"},
        # a push endpoint SNS reports disabled puts its device token there
        "NotifyFunction": {"dynamodb:Query", "dynamodb:UpdateItem"},
        # SES feedback adds records (bounces, complaints), as the unsubscribe route does
        "FeedbackFunction": {"dynamodb:UpdateItem"},
    }
    table = TABLES["SuppressionTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert "TimeToLiveSpecification" not in table["Properties"]  # nothing about it expires


@pytest.mark.parametrize("name", ["EmailFunction", "NotifyFunction"])
def test_links_in_messages_point_at_the_deployed_http_api(name: str) -> None:
    variables = FUNCTIONS[name]["Properties"]["Environment"]["Variables"]
    assert variables["NUDGE_UNSUBSCRIBE_URL"] == {"Fn::Sub": "${IngestApi.ApiEndpoint}/v1/unsubscribe"}


def test_the_sweep_may_delete_the_segment_record_of_a_user_whose_state_is_gone() -> None:
    # services/sweep deletes it (segments.erase) rather than write it again: IAM must allow that
    sweep = TEMPLATE["Resources"]["SweepFunction"]
    [usage] = [s for s in statements(sweep) if s.get("Sid") == "UsageTableSweep"]
    assert "dynamodb:DeleteItem" in usage["Action"]
    assert usage["Resource"] == {"Fn::GetAtt": ["UsageTable", "Arn"]}
