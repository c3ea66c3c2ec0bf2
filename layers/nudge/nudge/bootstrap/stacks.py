"""A deployed stack's outputs (template.yaml's Outputs), for the commands run against it by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.client import CloudFormationClient


class StackNotReadable(Exception):
    """The stack, or the outputs a command needs, could not be found; the message says which."""


def stack_outputs(
    stack: str, keys: Sequence[str], client: CloudFormationClient | None = None
) -> dict[str, str]:
    """The named outputs of the stack, each present. StackNotReadable otherwise."""
    cloudformation: CloudFormationClient = client if client is not None else boto3.client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        raise StackNotReadable(f"stack {stack}: {exc.response.get('Error', {}).get('Message', exc)}") from exc
    outputs = {o.get("OutputKey", ""): o.get("OutputValue", "") for s in stacks for o in s.get("Outputs", [])}
    missing = [key for key in keys if not outputs.get(key)]
    if missing:
        raise StackNotReadable(
            f"stack {stack} has no output {', '.join(missing)}: is it a Nudge stack (template.yaml)?"
        )
    return {key: outputs[key] for key in keys}
