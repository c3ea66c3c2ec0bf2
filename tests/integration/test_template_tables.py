"""Tables built locally have the shape template.yaml deploys; the local moto server loses no update."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nudge.domain.keys import hash_key
from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer, create_usage_resources, table_names
from nudge.tools.local.template import (
    TemplateError,
    load_template,
    table_create_kwargs,
    tables,
    ttl_attribute,
)

KEYS = ["wk-current", "wk-next"]


def template_table(template_path: Path, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = load_template(template_path)["Resources"][logical_id]["Properties"]
    return properties


@pytest.mark.usefixtures("aws")
def test_usage_table_has_the_templates_keys_stream_and_ttl(template_path: Path, unique_settings: Settings):
    # Given the template's UsageTable
    declared = template_table(template_path, "UsageTable")
    dynamodb = boto3.client("dynamodb")

    # When the local resources are created from it
    create_usage_resources(dynamodb, boto3.client("ssm"), template_path, unique_settings, KEYS)

    # Then the table carries the template's key schema, billing, stream and TTL
    table = dynamodb.describe_table(TableName=unique_settings.usage_table)["Table"]
    assert table["KeySchema"] == declared["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(declared["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": declared["StreamSpecification"]["StreamViewType"],
    }
    ttl = dynamodb.describe_time_to_live(TableName=unique_settings.usage_table)["TimeToLiveDescription"]
    assert ttl == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": declared["TimeToLiveSpecification"]["AttributeName"],
    }


@pytest.mark.usefixtures("aws")
def test_keys_are_stored_hashed_one_secure_string_per_key(template_path: Path, unique_settings: Settings):
    # Given two live server keys (a rotation in progress), a client and an admin key
    ssm = boto3.client("ssm")

    # When the local resources are created
    create_usage_resources(
        boto3.client("dynamodb"),
        ssm,
        template_path,
        unique_settings,
        KEYS,
        client_keys=["ck-1"],
        admin_keys=["ak-1"],
        client_origins=["https://app.example.com"],
    )

    # Then each key is one SecureString under the path, as `nudge keys create` makes them, and no
    # parameter holds a key in plain text
    found = ssm.get_parameters_by_path(Path=unique_settings.keys_path, WithDecryption=True)["Parameters"]
    assert {p["Type"] for p in found} == {"SecureString"}
    records = {p["Name"].rpartition("/")[2]: json.loads(p["Value"]) for p in found}
    assert sorted((r["kind"], r["sha256"]) for r in records.values()) == sorted(
        [
            ("server", hash_key("wk-current")),
            ("server", hash_key("wk-next")),
            ("client", hash_key("ck-1")),
            ("admin", hash_key("ak-1")),
        ]
    )
    assert all("wk-current" not in p["Value"] and "ck-1" not in p["Value"] for p in found)
    assert next(r for r in records.values() if r["kind"] == "client")["origins"] == [
        "https://app.example.com"
    ]


@pytest.mark.usefixtures("aws")
def test_creating_the_resources_twice_changes_nothing(template_path: Path, unique_settings: Settings):
    # Given resources already created
    dynamodb = boto3.client("dynamodb")
    ssm = boto3.client("ssm")
    create_usage_resources(dynamodb, ssm, template_path, unique_settings, KEYS)
    dynamodb.put_item(TableName=unique_settings.usage_table, Item={"pk": {"S": "u#1"}, "sk": {"S": "state"}})

    # When a restarted stack creates them again
    create_usage_resources(dynamodb, ssm, template_path, unique_settings, KEYS)

    # Then the data is still there
    assert dynamodb.scan(TableName=unique_settings.usage_table)["Count"] == 1


def test_every_table_of_the_template_has_a_local_name(template_path: Path):
    # Given the template's tables and the local naming
    names = table_names(Settings())

    # Then none is left without a name (a new table in the template needs a line in table_names)
    assert tables(template_path)
    assert set(tables(template_path)) <= set(names)


def test_short_form_tags_load_as_their_long_form(template_path: Path):
    # When the template is loaded
    resources = load_template(template_path)["Resources"]

    # Then !Ref, !Sub, !GetAtt and !If are plain data
    function = resources["IngestFunction"]["Properties"]
    assert function["Environment"]["Variables"]["NUDGE_USAGE_TABLE"] == {"Ref": "UsageTable"}
    assert function["Environment"]["Variables"]["NUDGE_KEYS_PATH"] == {"Fn::Sub": "/nudge/${Stage}/keys"}
    assert resources["IngestApi"]["Properties"]["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["IngestApiAccessLogs", "Arn"]
    }
    [action] = resources["IngestFunctionErrorsAlarm"]["Properties"]["AlarmActions"]
    assert list(action) == ["Fn::If"]


INDEXED_TEMPLATE = """
Resources:
  LedgerTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PROVISIONED
      ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: due_at, AttributeType: N}
        - {AttributeName: kind, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: by-due
          KeySchema:
            - {AttributeName: kind, KeyType: HASH}
            - {AttributeName: due_at, KeyType: RANGE}
          Projection: {ProjectionType: KEYS_ONLY}
          ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}
          ContributorInsightsSpecification: {Enabled: true}
      LocalSecondaryIndexes:
        - IndexName: by-kind
          KeySchema:
            - {AttributeName: pk, KeyType: HASH}
            - {AttributeName: kind, KeyType: RANGE}
          Projection: {ProjectionType: ALL}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: "true"}
      Tags:
        - {Key: stage, Value: !Ref Stage}
  Queue:
    Type: AWS::SQS::Queue
"""


@pytest.mark.usefixtures("aws")
def test_indexes_and_provisioned_billing_come_from_the_template(tmp_path: Path):
    # Given a template whose table has a GSI, an LSI, provisioned billing and a !Ref in its tags
    path = tmp_path / "template.yaml"
    path.write_text(INDEXED_TEMPLATE)
    dynamodb = boto3.client("dynamodb")

    # When the table is created from it
    assert tables(path) == ["LedgerTable"]
    dynamodb.create_table(**table_create_kwargs(path, "LedgerTable", "ledger-it"))

    # Then the indexes exist as declared and the TTL attribute is read
    table = dynamodb.describe_table(TableName="ledger-it")["Table"]
    assert [(i["IndexName"], i["Projection"]["ProjectionType"]) for i in table["GlobalSecondaryIndexes"]] == [
        ("by-due", "KEYS_ONLY")
    ]
    assert [i["IndexName"] for i in table["LocalSecondaryIndexes"]] == ["by-kind"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert "StreamSpecification" not in table_create_kwargs(path, "LedgerTable", "ledger-it")
    assert ttl_attribute(path, "LedgerTable") == "ttl"


def test_an_intrinsic_in_a_key_schema_is_refused_by_name(tmp_path: Path):
    # Given a table whose key attribute comes from a parameter
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n"
        "  T:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n"
        "      BillingMode: PAY_PER_REQUEST\n"
        "      AttributeDefinitions: [{AttributeName: !Ref KeyName, AttributeType: S}]\n"
        "      KeySchema: [{AttributeName: !Ref KeyName, KeyType: HASH}]\n"
    )

    # Then building it locally fails naming the place, rather than creating a wrong table
    with pytest.raises(TemplateError, match=r"T\.KeySchema\[0\]\.AttributeName: Ref"):
        table_create_kwargs(path, "T", "t")


def _increment(endpoint_url: str, table: str, times: int, start: threading.Barrier) -> None:
    # One client per thread, as separate processes would have; no retries hide conflicts.
    dynamodb = boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 1})
    )
    key = {"pk": {"S": "acct#hot"}, "sk": {"S": "counter"}}
    start.wait()
    done = 0
    while done < times:
        item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        seen = int(item["n"]["N"]) if item else 0
        condition: dict[str, Any] = (
            {"ConditionExpression": "#n = :seen", "ExpressionAttributeValues": {":seen": {"N": str(seen)}}}
            if item
            else {"ConditionExpression": "attribute_not_exists(pk)"}
        )
        if item:
            condition["ExpressionAttributeNames"] = {"#n": "n"}
        try:
            dynamodb.put_item(TableName=table, Item={**key, "n": {"N": str(seen + 1)}}, **condition)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            time.sleep(random.uniform(0, 0.002))  # someone else wrote first: back off, read again
            continue
        done += 1


def test_concurrent_conditional_writes_through_the_server_lose_no_update(
    moto_server: LockedMotoServer, template_path: Path, unique_settings: Settings
):
    # Given the usage table on the local server
    endpoint = moto_server.endpoint_url
    create_usage_resources(
        boto3.client("dynamodb", endpoint_url=endpoint),
        boto3.client("ssm", endpoint_url=endpoint),
        template_path,
        unique_settings,
        KEYS,
    )
    threads_count, times = 16, 5
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _increment(endpoint, unique_settings.usage_table, times, start)
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    # When 16 clients read-increment-conditionally-put the same item at once
    workers = [threading.Thread(target=run) for _ in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    # Then every increment counts exactly once
    assert not errors
    assert not any(worker.is_alive() for worker in workers)
    item = boto3.client("dynamodb", endpoint_url=endpoint).get_item(
        TableName=unique_settings.usage_table,
        Key={"pk": {"S": "acct#hot"}, "sk": {"S": "counter"}},
        ConsistentRead=True,
    )["Item"]
    assert int(item["n"]["N"]) == threads_count * times


def test_the_template_is_parsed_once_per_version_and_each_reader_gets_its_own_copy(tmp_path: Path) -> None:
    # Given a template read once, and the copy read changed by its reader
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n", encoding="utf-8")
    first = load_template(path)
    first["Resources"]["Queue"]["Type"] = "changed by a reader"
    # Then the next reader gets the file's content, not the change
    assert load_template(path)["Resources"]["Queue"]["Type"] == "AWS::SQS::Queue"
    # And once the file changes, the new content
    path.write_text("Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n", encoding="utf-8")
    assert list(load_template(path)["Resources"]) == ["Topic"]
