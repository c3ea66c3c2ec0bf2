"""Read template.yaml so local tables are built from what deploys, never from a copy.

``find_root`` finds the project directory that holds it.

CloudFormation's short-form tags (``!Ref``, ``!Sub``, ``!GetAtt``, ...) are not YAML
that a safe loader accepts; here they load as the long form they stand for
(``{"Ref": ...}``, ``{"Fn::Sub": ...}``) so the template reads as plain data.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import yaml

TABLE_TYPE = "AWS::DynamoDB::Table"

# create_table accepts these keys per index; CloudFormation-only ones (ContributorInsights,
# Kinesis, ...) are left out because boto3 rejects them.
_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")


class TemplateError(ValueError):
    """template.yaml lacks something the local stack needs, or holds what it cannot resolve."""


# libyaml's parser where PyYAML was built with it: the pure-Python one took over a second per read
# of template.yaml, which every local stack and most integration tests read several times.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CfnLoader(_SafeLoader):  # type: ignore[valid-type, misc]
    """A safe loader that turns CloudFormation short-form tags into their long-form dicts."""


def _construct_intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    # `!Ref` and `!Condition` are the two short forms without the "Fn::" prefix.
    key = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        # `!GetAtt Table.Arn` is the short form of {"Fn::GetAtt": ["Table", "Arn"]}.
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no fourth node kind
        raise TemplateError(f"unexpected node for !{tag_suffix}: {node!r}")
    return {key: value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


# The local stack's start, and most integration tests, read template.yaml again for every table,
# queue and function they make (0.19 s a parse in PyYAML's pure-Python parser, a quarter of the
# start's CPU): parsed once per version of the file, each caller given its own copy.
_parsed: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}
_parsed_lock = threading.Lock()


def load_template(template_path: Path) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long form."""
    path = template_path.resolve()
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    with _parsed_lock:
        cached = _parsed.get(path)
    if cached is None or cached[0] != version:
        with template_path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
        if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
            raise TemplateError(f"{template_path}: not a CloudFormation template (no Resources)")
        with _parsed_lock:
            _parsed[path] = cached = (version, data)
    return copy.deepcopy(cached[1])


def tables(template_path: Path) -> list[str]:
    """Logical ids of every DynamoDB table the template declares, in template order."""
    resources: dict[str, Any] = load_template(template_path)["Resources"]
    return [logical_id for logical_id, resource in resources.items() if resource.get("Type") == TABLE_TYPE]


def _table_properties(template_path: Path, logical_id: str) -> dict[str, Any]:
    resource = load_template(template_path)["Resources"].get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != TABLE_TYPE:
        raise TemplateError(f"{template_path}: {logical_id} is not an {TABLE_TYPE}")
    properties = resource.get("Properties")
    if not isinstance(properties, dict):
        raise TemplateError(f"{template_path}: {logical_id} has no Properties")
    return properties


def _literal(value: Any, where: str) -> Any:
    """The value, provided it holds no intrinsic function (there is no stack to resolve it)."""
    if isinstance(value, dict):
        for key in value:
            if key == "Ref" or key.startswith("Fn::"):
                raise TemplateError(f"{where}: {key} cannot be resolved locally; use a literal value")
        return {key: _literal(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _indexes(
    properties: dict[str, Any], name: str, keys: tuple[str, ...], where: str
) -> list[dict[str, Any]]:
    indexes = _literal(properties.get(name, []), f"{where}.{name}")
    return [{key: index[key] for key in keys if key in index} for index in indexes]


def table_create_kwargs(template_path: Path, logical_id: str, table_name: str) -> dict[str, Any]:
    """boto3 ``create_table`` kwargs from the table's own Properties in the template.

    Carried over: KeySchema, AttributeDefinitions, BillingMode (and ProvisionedThroughput
    when provisioned), GlobalSecondaryIndexes, LocalSecondaryIndexes, StreamSpecification,
    TableClass. TTL is not a create_table argument: see :func:`ttl_attribute`. SSE,
    point-in-time recovery, deletion policies and tags only matter in AWS and are left out.
    """
    properties = _table_properties(template_path, logical_id)
    where = f"{template_path}: {logical_id}"
    try:
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "KeySchema": _literal(properties["KeySchema"], f"{where}.KeySchema"),
            "AttributeDefinitions": _literal(
                properties["AttributeDefinitions"], f"{where}.AttributeDefinitions"
            ),
        }
    except KeyError as exc:
        raise TemplateError(f"{where}: missing {exc.args[0]}") from exc

    # CloudFormation's default is PROVISIONED, and then throughput is required.
    billing_mode = _literal(properties.get("BillingMode", "PROVISIONED"), f"{where}.BillingMode")
    kwargs["BillingMode"] = billing_mode
    if billing_mode == "PROVISIONED":
        if "ProvisionedThroughput" not in properties:
            raise TemplateError(f"{where}: PROVISIONED billing needs ProvisionedThroughput")
        kwargs["ProvisionedThroughput"] = _literal(
            properties["ProvisionedThroughput"], f"{where}.ProvisionedThroughput"
        )

    global_indexes = _indexes(properties, "GlobalSecondaryIndexes", _GSI_KEYS, where)
    if global_indexes:
        kwargs["GlobalSecondaryIndexes"] = global_indexes
    local_indexes = _indexes(properties, "LocalSecondaryIndexes", _LSI_KEYS, where)
    if local_indexes:
        kwargs["LocalSecondaryIndexes"] = local_indexes

    # CloudFormation has no StreamEnabled: declaring a view type is what turns the stream on.
    stream = _literal(properties.get("StreamSpecification"), f"{where}.StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}

    if "TableClass" in properties:
        kwargs["TableClass"] = _literal(properties["TableClass"], f"{where}.TableClass")
    return kwargs


def ttl_attribute(template_path: Path, logical_id: str) -> str | None:
    """The attribute the table expires items by, or None when TTL is not enabled."""
    properties = _table_properties(template_path, logical_id)
    where = f"{template_path}: {logical_id}.TimeToLiveSpecification"
    spec = _literal(properties.get("TimeToLiveSpecification"), where)
    # CloudFormation takes booleans as YAML booleans or as the strings "true"/"false".
    if not spec or str(spec.get("Enabled")).lower() != "true":
        return None
    attribute = spec.get("AttributeName")
    if not isinstance(attribute, str) or not attribute:
        raise TemplateError(f"{where}: Enabled without AttributeName")
    return attribute


def find_root(start: Path | None = None) -> Path:
    """The project directory: the nearest one holding template.yaml, from `start` (or the current
    directory) upwards, else the checkout this package was installed from."""
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for candidate in candidates:
        for directory in [candidate, *candidate.parents]:
            if (directory / "template.yaml").is_file() and (directory / "functions").is_dir():
                return directory
    raise FileNotFoundError("no template.yaml found here or above; run from the Nudge project directory")
