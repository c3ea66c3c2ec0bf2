"""What the SDKs fetch at start-up: `GET /v1/projects/{writeKey}/settings`, the document Segment's CDN
serves (analytics-next from `cdnURL`, analytics-kotlin and analytics-swift from `cdnHost`), pointing
the `Segment.io` destination at this API so an app needs no other change than the host.

Only what these SDKs read is filled in; the rest has the empty values they default to when a
workspace has no destinations, plans or middleware.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

SETTINGS_PATH = re.compile(r"^/v1/projects/([^/]+)/settings$")


class SegmentIo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    api_key: str = Field(alias="apiKey", description="The write key the SDK sends its events with.")
    api_host: str = Field(alias="apiHost", description="Where the SDK posts its events: host and /v1.")
    protocol: str = Field(description="https in AWS; http from the local stack.")
    unbundled_integrations: list[str] = Field(default_factory=list, alias="unbundledIntegrations")
    add_bundled_metadata: bool = Field(default=True, alias="addBundledMetadata")
    maybe_bundled_config_ids: dict[str, list[str]] = Field(
        default_factory=dict, alias="maybeBundledConfigIds"
    )


class SdkSettings(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    integrations: dict[str, SegmentIo]
    plan: dict[str, Any] = Field(default_factory=lambda: {"track": {"__default": {"enabled": True}}})
    edge_function: dict[str, Any] = Field(default_factory=dict, alias="edgeFunction")
    analytics_next_enabled: bool = Field(default=True, alias="analyticsNextEnabled")
    middleware_settings: dict[str, Any] = Field(default_factory=dict, alias="middlewareSettings")
    enabled_middleware: dict[str, Any] = Field(default_factory=dict, alias="enabledMiddleware")
    metrics: dict[str, Any] = Field(default_factory=lambda: {"sampleRate": 0}, alias="metrics")
    remote_plugins: list[Any] = Field(default_factory=list, alias="remotePlugins")


def settings_key(path: str) -> str | None:
    """The write key of a settings path, or None for any other path."""
    match = SETTINGS_PATH.match(path)
    return unquote(match.group(1)) if match else None


def sdk_settings(write_key: str, host: str, protocol: str) -> SdkSettings:
    segment = SegmentIo(api_key=write_key, api_host=f"{host}/v1", protocol=protocol)
    return SdkSettings(integrations={"Segment.io": segment})
