"""Event properties as the tracking plan declares them (type, enum, required, sensitive) and which
of them the usage state keeps for rules: dimensions (counts per value), sums and last values.

Shared by the plan (rulebook), the fold (domain), the condition parser and ingest's checks, so it
lives here, below all of them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PropertyType = Literal["string", "number", "integer", "boolean"]
Scalar = str | int | float | bool

# What of them is kept is bounded with every other bound, in nudge.model.limits.


class PropertySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: PropertyType = Field(description="string, number, integer or boolean.")
    description: str = ""
    enum: list[Scalar] | None = Field(default=None, description="The only values allowed.")
    required: bool = Field(default=False, description="Every such event must carry it.")
    sensitive: bool = Field(
        default=False, description="Personal or secret: not accepted from browser and app (client) keys."
    )
    dimension: bool = Field(
        default=False, description="Kept per value (counts within windows): rules may filter on it (where:)."
    )
    sum: bool = Field(default=False, description="Summed (lifetime and per day): rules may test its sum:.")
    last: bool = Field(
        default=False, description="Its latest value is kept: rules and templates may read it."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PropertySpec:
        if self.sum and self.type not in ("number", "integer"):
            raise ValueError(f"sum: true needs a number or integer property, not {self.type}")
        if self.dimension and self.type == "number":
            raise ValueError(
                "a number cannot be a dimension (counts per exact value); make it an integer or a "
                "string, or keep it as a sum or last value"
            )
        if self.sensitive and self.required:
            # A client key's message without a user token loses its sensitive properties: were
            # one also required, the message would be refused instead of landing without it.
            raise ValueError(
                "a sensitive property cannot be required: browsers and apps without a user token "
                "send it dropped; make it optional"
            )
        if self.enum is not None:
            if not self.enum:
                raise ValueError("enum lists the allowed values; leave it out to allow any")
            wrong = [v for v in self.enum if not accepts(self.type, v)]
            if wrong:
                raise ValueError(f"enum value {wrong[0]!r} is not a {self.type}")
        return self

    @property
    def kept(self) -> bool:
        return self.dimension or self.sum or self.last

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit this property (None: it does)."""
        if not accepts(self.type, value):
            return f"should be {_A[self.type]}, got {_kind(value)}"
        kind = type_name(value)
        if self.enum is not None and not any(value == v and type_name(v) == kind for v in self.enum):
            allowed = ", ".join(canonical(v) for v in self.enum)
            return f"{canonical(value)!r} is not one of the allowed values ({allowed})"
        return None


_A = {"string": "a string", "number": "a number", "integer": "an integer", "boolean": "true or false"}


def accepts(kind: PropertyType, value: Any) -> bool:
    """Whether a JSON value is of the declared type (an integer may come as 3.0, as JSON allows)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "integer":
        return isinstance(value, int) or value.is_integer()
    return value == value and value not in (float("inf"), float("-inf"))  # no NaN or infinity


def type_name(value: Any) -> str:
    """The plan type a scalar is (numbers compare as numbers, whatever their Python type)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    name = type_name(value)
    if name == "other":
        return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"
    shown = repr(value) if name == "string" else canonical(value)
    return f"{name} {shown}"[:60]


def canonical(value: Scalar) -> str:
    """A value as a dimension keeps it (the key of its counts) and `where:` compares it:
    true/false for booleans, 3 for an integral number, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
