"""Response shapes shared by the API's routes (one error item shape for every 4xx/5xx body)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorItem(BaseModel):
    index: int | None = Field(description="Position of the message in the request (0 for a single message).")
    field: str = Field(description="The offending field, dotted (e.g. traits.timezone).")
    message: str = Field(description="What is wrong and how to fix it.")


class IngestResponse(BaseModel):
    """The tracking routes' answer, and the shape of whatever is refused before routing (401, 413, ...)."""

    success: bool
    accepted: int = Field(default=0, description="Messages kept (duplicates included: they count once).")
    errors: list[ErrorItem] = Field(default_factory=list)
    warnings: list[ErrorItem] = Field(default_factory=list)
