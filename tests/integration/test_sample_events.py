"""events/ holds a sample event for every function's trigger, and each runs through its handler.

Table-driven over events/*.json: each file's function is found from the event itself, as AWS would
route it (an HTTP API route, the table of a stream, the queue of an SQS record, the rule of a
schedule) against template.yaml's event sources, and the real handler runs it on the local stack
(`sam local invoke <Function> -e events/<file>` takes the same file). A new function, or a new kind
of trigger on one, needs its sample here: `test_every_trigger_has_a_sample` names what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from moto.events.models import EventPattern

from nudge.tools.local.stack import LocalStack
from nudge.tools.local.template import load_template

REPO = Path(__file__).resolve().parents[2]
EVENTS = sorted((REPO / "events").glob("*.json"))
# What an HTTP sample must answer, where it is not 200 (a sample of bad input shows the 400).
STATUS = {"bad-request.json": 400}


@dataclass(frozen=True)
class Source:
    """One event source of a function in template.yaml: its type and the resource it reads."""

    function: str
    name: str
    type: str
    resource: str  # the logical id of the queue or table; "" for HttpApi and Schedule
    patterns: tuple[str, ...] = ()  # the event source's FilterCriteria patterns (JSON), if any


def sources() -> list[Source]:
    found: list[Source] = []
    resources = load_template(REPO / "template.yaml")["Resources"]
    for function, spec in resources.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        for name, event in (spec["Properties"].get("Events") or {}).items():
            props = event.get("Properties", {})
            ref = props.get("Queue") or props.get("Stream") or {}
            resource = ref["Fn::GetAtt"][0] if isinstance(ref, dict) and "Fn::GetAtt" in ref else ""
            filters = props.get("FilterCriteria", {}).get("Filters", [])
            patterns = tuple(f["Pattern"] for f in filters)
            found.append(Source(function, name, event["Type"], resource, patterns))
    return found


def source_of(event: dict[str, Any], stack: LocalStack) -> Source:
    """The event source (and so the function) AWS would deliver this sample from."""
    every = sources()
    http = event.get("requestContext", {}).get("http")
    if http is not None:
        matched = stack.match(http["method"], event["rawPath"])
        assert matched is not None, f"no route of template.yaml serves {http['method']} {event['rawPath']}"
        return next(s for s in every if s.function == matched[0].function and s.type == "HttpApi")
    records = event.get("Records")
    if records:
        origin = records[0].get("eventSource")
        arn = records[0].get("eventSourceARN", "")
        kind = {"aws:sqs": "SQS", "aws:dynamodb": "DynamoDB"}.get(origin)
        # A deployed queue or table is named <stack>-<LogicalId>-<suffix>: the ARN names its resource.
        hits = [s for s in every if s.type == kind and s.resource and f"-{s.resource}-" in arn]
        # Several functions may read one stream, each through its filter: Lambda hands a record
        # only to the sources whose FilterCriteria it matches.
        hits = [s for s in hits if passes(s, records[0])]
        assert hits, f"{origin} record from {arn}: no event source of template.yaml reads it"
        # A user's write that carries a rollup delta reaches both the evaluate and the rollup
        # functions: the sample is named for the one it is about (`-rollup`), the other has its own.
        if len(hits) > 1 and "rd" in records[0].get("dynamodb", {}).get("NewImage", {}):
            hits = [s for s in hits if s.function == "RollupFunction"]
        assert len(hits) == 1, f"{origin} record from {arn}: no single event source of template.yaml reads it"
        return hits[0]
    if event.get("detail-type") == "Scheduled Event":
        rule = " ".join(event.get("resources", []))
        hits = [s for s in every if s.type == "Schedule" and f"-{s.function}{s.name}-" in rule]
        assert len(hits) == 1, f"scheduled event from {rule}: no single schedule of template.yaml fires it"
        return hits[0]
    raise AssertionError(
        "an event of a kind this test cannot route yet: teach source_of how AWS delivers it to its function"
    )


def passes(source: Source, record: dict[str, Any]) -> bool:
    """Whether the event source's FilterCriteria (any of its patterns) lets `record` through."""
    if not source.patterns:
        return True
    return any(EventPattern.load(p).matches_event(cast(Any, record)) for p in source.patterns)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(containers=0, log_level="WARNING") as running:
        yield running


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_each_sample_event_runs_through_its_handler(path: Path, stack: LocalStack) -> None:
    # Given a sample event as Lambda would deliver it
    event = json.loads(path.read_text(encoding="utf-8"))
    source = source_of(event, stack)
    # When its function's handler runs it
    answer = stack.invoke_function(source.function, event)
    # Then it is handled: an HTTP answer as expected, no record of a batch reported failed
    if source.type == "HttpApi":
        assert answer["statusCode"] == STATUS.get(path.name, 200), answer
    elif source.type in ("SQS", "DynamoDB"):
        assert answer == {"batchItemFailures": []}
    else:
        assert isinstance(answer, dict)
        assert "error" not in answer


def test_every_trigger_has_a_sample(stack: LocalStack) -> None:
    # Every (function, kind of trigger, queue or table) of template.yaml; HTTP routes once a function.
    samples = [json.loads(path.read_text(encoding="utf-8")) for path in EVENTS]
    covered = {(s.function, s.type, s.resource) for s in (source_of(e, stack) for e in samples)}
    wanted = {(s.function, s.type, s.resource) for s in sources()}
    missing = sorted(f"{f} ({t}{' ' + r if r else ''})" for f, t, r in wanted - covered)
    assert not missing, f"no sample in events/ for: {', '.join(missing)}; add events/<name>.json"
