"""The local stand-in for AWS: an in-process moto server and the resources Nudge needs in it.

Only the CLI, the local stack and tests import this module; the Lambda layer ships it
but never loads it (moto is not a layer dependency).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from nudge.domain.keys import KeyKind, new_record
from nudge.settings import Settings
from nudge.tools.keys import put_record
from nudge.tools.local import moto_transactions
from nudge.tools.local.template import (
    TemplateError,
    load_template,
    table_create_kwargs,
    tables,
    ttl_attribute,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_ssm.client import SSMClient


def table_names(settings: Settings) -> dict[str, str]:
    """Template logical id -> table name. Add a line here when template.yaml adds a table."""
    return {
        "UsageTable": settings.usage_table,
        "LedgerTable": settings.ledger_table,
        "RateLimitTable": settings.rate_limit_table,
        "SuppressionTable": settings.suppression_table,
    }


def create_usage_resources(
    dynamodb: DynamoDBClient,
    ssm: SSMClient,
    template_path: Path,
    settings: Settings,
    write_keys: Sequence[str],
    *,
    client_keys: Sequence[str] = (),
    admin_keys: Sequence[str] = (),
    client_origins: Sequence[str] = ("*",),
) -> None:
    """Create every table of the template (with its TTL) and the keys' records: `write_keys` as
    server keys, the others as their kind, stored hashed under settings.keys_path as `nudge keys
    create` stores them in AWS.

    Idempotent: tables that already exist are left as they are, records are overwritten, so a
    restarted local stack can run it against a moto server that outlived it.
    """
    names = table_names(settings)
    for logical_id in tables(template_path):
        if logical_id not in names:
            raise KeyError(
                f"{template_path} declares table {logical_id}, but nudge.tools.local.aws.table_names "
                "does not name it"
            )
        _create_table(dynamodb, template_path, logical_id, names[logical_id])

    servers = [key.strip() for key in write_keys if key.strip()]
    if not servers:
        raise ValueError("at least one write key is needed, or no client could ever send events")
    now = datetime.now(UTC)
    kinds = ((KeyKind.SERVER, servers), (KeyKind.CLIENT, client_keys), (KeyKind.ADMIN, admin_keys))
    for kind, keys in kinds:
        for number, key in enumerate((k.strip() for k in keys if k.strip()), start=1):
            origins = client_origins if kind is KeyKind.CLIENT else ()
            record = new_record(
                f"local-{kind.value}-{number}",
                kind,
                key,
                created_at=now,
                origins=origins,
                label="local stack",
            )
            put_record(ssm, settings.keys_path, record, overwrite=True)


def _create_table(dynamodb: DynamoDBClient, template_path: Path, logical_id: str, table_name: str) -> None:
    try:
        dynamodb.create_table(**table_create_kwargs(template_path, logical_id, table_name))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)

    attribute = ttl_attribute(template_path, logical_id)
    if attribute is None:
        return
    current = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    # DynamoDB refuses to enable TTL twice, so a re-run checks first.
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


QUEUE_TYPE = "AWS::SQS::Queue"
# CloudFormation queue properties that are SQS attributes of the same name and meaning.
_QUEUE_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def create_queues(sqs: SQSClient, template_path: Path, prefix: str) -> dict[str, str]:
    """Create every SQS queue of the template; return template logical id -> queue URL.

    Names are ``<prefix>-<LogicalId>`` (``.fifo`` kept for FIFO queues). Attributes come
    from the queue's own Properties, a RedrivePolicy's ``!GetAtt Dlq.Arn`` pointing at the
    queue created for ``Dlq``, so local queues redrive like deployed ones. Idempotent.
    """
    resources: dict[str, Any] = load_template(template_path)["Resources"]
    declared = {lid: r.get("Properties") or {} for lid, r in resources.items() if r.get("Type") == QUEUE_TYPE}
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}

    def create(logical_id: str, seen: tuple[str, ...] = ()) -> None:
        if logical_id in urls:
            return
        if logical_id in seen:
            raise TemplateError(f"{template_path}: queues redrive in a cycle: {' -> '.join(seen)}")
        properties = declared[logical_id]
        attributes: dict[QueueAttributeNameType, str] = {
            name: str(properties[name]).lower()
            if isinstance(properties[name], bool)
            else str(properties[name])
            for name in _QUEUE_ATTRIBUTES
            if name in properties
        }
        redrive = properties.get("RedrivePolicy")
        if redrive is not None:
            target = redrive.get("deadLetterTargetArn")
            dlq = target.get("Fn::GetAtt", [None])[0] if isinstance(target, dict) else None
            if dlq not in declared:
                raise TemplateError(f"{template_path}: {logical_id} redrives to {target!r}, not a queue here")
            create(dlq, (*seen, logical_id))
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[dlq], "maxReceiveCount": int(redrive["maxReceiveCount"])}
            )
        fifo = attributes.get("FifoQueue") == "true"
        name = f"{prefix}-{logical_id}" + (".fifo" if fifo else "")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        urls[logical_id] = url
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    for logical_id in declared:
        create(logical_id)
    return urls


class _SerializedApp:
    """Runs one request at a time through the wrapped WSGI app.

    moto evaluates a conditional write as "read, compare, write" in Python without a
    lock, so two threads can both pass the same condition and one update is lost.
    DynamoDB itself never allows that, and Nudge's "no lost update" bar rests on it.
    """

    def __init__(self, app: WSGIApplication, lock: threading.Lock) -> None:
        self._app = app
        self._lock = lock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            result = self._app(environ, start_response)
            try:
                # Drain the body under the lock too: no backend code may run outside it.
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class _QuietRequestHandler(MotoRequestHandler):
    """Keeps werkzeug from printing a line per request into the demo's terminal."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LockedMotoServer:
    """An in-process moto server on 127.0.0.1 that serializes requests.

    Many client threads (local API requests, stream and queue pumps) may talk to it at
    once; each request runs alone, which gives DynamoDB's per-request atomicity back.
    ``port=0`` takes a free port; ``endpoint_url`` tells which one.

    moto's backends are process-global: a server and ``mock_aws`` in the same process
    see the same state.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        self._host = host
        self._port = port
        self._quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        # Held by each request while moto runs it, over HTTP or in process (moto_direct).
        self.lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LockedMotoServer is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("LockedMotoServer is already started")
        # Requests run one at a time (below), so transactions can skip moto's per-item table copy.
        moto_transactions.install()
        app = _SerializedApp(DomainDispatcherApplication(create_backend_app), self.lock)
        # Threaded: slow or idle keep-alive connections don't block other clients;
        # the lock, not the server, decides that requests run one at a time.
        self._server = make_server(
            self._host,
            self._port,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler if self._quiet else MotoRequestHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"moto-server-{self._server.server_port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        # shutdown() waits for serve_forever to return, which then closes the socket.
        server.shutdown()
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["LockedMotoServer", "create_queues", "create_usage_resources", "table_names"]


REGION = "us-east-1"


# moto's default account: ARNs in contexts and events look like the ones moto itself makes.
ACCOUNT_ID = "123456789012"


class HandlerFailed(Exception):
    """The handler raised: API Gateway answers 500, as it does when a Lambda errors."""
