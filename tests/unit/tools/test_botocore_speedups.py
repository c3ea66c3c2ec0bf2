"""The local stack's User-Agent built once per client and set of feature ids: the same header."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.context import start_as_current_context
from botocore.useragent import register_feature_id

from nudge.tools.local import botocore_speedups
from nudge.tools.local.botocore_speedups import speed_up_botocore


def _client(**config: Any) -> Any:
    return boto3.session.Session().client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=boto3.session.Config(**config) if config else None,
    )


@pytest.mark.parametrize(
    "config", [{}, {"user_agent_extra": "nudge-test"}, {"retries": {"mode": "adaptive"}}]
)
def test_the_header_is_the_one_botocore_builds(config: dict[str, Any]) -> None:
    # Given a client's User-Agent builder, and the header botocore itself builds, with and without
    # a call's feature ids
    agent = _client(**config)._user_agent_creator
    speed_up_botocore()
    build = type(agent).to_string.__wrapped__  # type: ignore[attr-defined]  # botocore's own
    plain = build(agent)
    with start_as_current_context():
        register_feature_id("WAITER")
        with_feature = build(agent)
        # When the patched method builds them (twice each)
        patched_with_feature = [agent.to_string(), agent.to_string()]
    patched_plain = [agent.to_string(), agent.to_string()]

    # Then the headers are botocore's, and a feature id of one call does not stick to the next
    assert with_feature != plain
    assert patched_with_feature == [with_feature, with_feature]
    assert patched_plain == [plain, plain]
    assert agent in botocore_speedups._built


def test_two_clients_with_different_configs_keep_their_own_headers() -> None:
    speed_up_botocore()
    first = _client()._user_agent_creator
    second = _client(user_agent_extra="nudge-other")._user_agent_creator
    assert first.to_string() != second.to_string()
    assert "nudge-other" in second.to_string()
    assert "nudge-other" not in first.to_string()
