"""Message templates (rules/templates/*.yaml): what a template holds. Loading them (Jinja parses and
checks every part) is nudge.rulebook.template_loader's, so a rule set read from its snapshot does
not import Jinja.

A template reads the event that made its rule fire as `trigger` (`trigger.event`, `trigger.at`,
`trigger.properties.<name>`: the properties the plan keeps of it, see nudge.domain.trigger) and
the user's latest kept values as `last.<event>.<property>`. A name the plan does not keep would
render empty at send time; lint refuses it, at the template's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nudge.model.durations import Duration
from nudge.model.inapp import SURVEY_EVENT, Survey
from nudge.model.limits import IN_APP_DEFAULT_EXPIRY_DAYS, IN_APP_MAX_EXPIRY_DAYS, SURVEY_CHOICES_MAX

TEMPLATES_DIR = "templates"
PARTS = ("subject", "text", "html")


class SurveySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    question: str = Field(min_length=1, description="The one question, e.g. What is getting in your way?")
    choices: list[str] = Field(
        default_factory=list,
        max_length=SURVEY_CHOICES_MAX,
        description="The answers offered (each lands as the property's value); none: free text only.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="What the user reads for each choice, e.g. {too_complex: It's too complicated} "
        "(default: the choice itself, which is what lands in the property).",
    )
    free_text: bool = Field(default=False, description="Also take an answer in the user's own words.")
    property: str = Field(
        description=(
            f"The property of the event `{SURVEY_EVENT}` the answer lands in, declared in the tracking "
            "plan (e.g. blocker), so rules and journeys can branch on it."
        )
    )

    def survey(self) -> Survey:
        return Survey(
            question=self.question,
            choices=self.choices,
            labels=self.labels,
            free_text=self.free_text,
            property=self.property,
        )


class InAppSpec(BaseModel):
    """What an in-app message needs beyond a title (`subject`) and a body (`text`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    link: str = Field(
        default="", description="Where the message's button goes (a template, e.g. {{ links.dashboard }})."
    )
    expires: Duration = Field(
        default=timedelta(days=IN_APP_DEFAULT_EXPIRY_DAYS),
        description=f"Shown until this long after it was sent (at most {IN_APP_MAX_EXPIRY_DAYS}d).",
    )
    survey: SurveySpec | None = Field(default=None, description="Makes the message a one-question survey.")

    @field_validator("expires")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(days=IN_APP_MAX_EXPIRY_DAYS):
            raise ValueError(f"expires must be between 1s and {IN_APP_MAX_EXPIRY_DAYS}d, e.g. 14d")
        return value


class TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    subject: str = ""
    text: str
    html: str = ""
    in_app: InAppSpec | None = Field(
        default=None, description="For the in_app channel: link, expiry, and an optional survey."
    )


@dataclass(frozen=True)
class TemplateRef:
    """A `trigger.properties.X` or `last.E.P` a template reads, where it reads it."""

    file: str
    line: int
    path: tuple[str, ...]  # ("trigger", "properties", X) or ("last", E, P)
