"""Fixtures for tests against moto: a fake AWS environment and tables built from template.yaml."""

from __future__ import annotations

import os

# Before any boto3 client exists (Powertools makes some at import): a region, and
# credentials that can never reach a real account.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_PROFILE", None)

import gc
import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from moto import mock_aws

from nudge.settings import Settings
from nudge.tools.local.aws import LockedMotoServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def template_path() -> Path:
    """The template that deploys: tables in tests are built from it, never from a copy."""
    return REPO / "template.yaml"


@pytest.fixture
def aws() -> Iterator[None]:
    """moto in-process (no server): every boto3 client made inside the test is mocked."""
    with mock_aws():
        yield


@pytest.fixture
def moto_server() -> Iterator[LockedMotoServer]:
    """A LockedMotoServer on a free port, for tests that need real HTTP and threads."""
    with LockedMotoServer() as server:
        yield server


@pytest.fixture
def unique_settings() -> Settings:
    """Settings whose table and parameter names no other test uses."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(usage_table=f"usage-{suffix}", keys_path=f"/nudge/test-{suffix}/keys")


class IngestContext:
    """The Lambda context the ingest function is invoked with (what Powertools reads of it)."""

    function_name = "ingest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"

    def __init__(self, request_id: str = "req-it") -> None:
        self.aws_request_id = request_id


def load_ingest_app(module_name: str) -> ModuleType:
    """functions/ingest/app.py imported afresh under its own name: a cold start."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / "functions" / "ingest" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        gc.unfreeze()  # app.py froze what it built (see tests/shipped.py load_handler)
        gc.enable()
    return module
