"""Load marketer YAML keeping the line of every key, so errors can say file:line.

The problems, the document and its validation live here; the parsing (PyYAML) in
nudge.rulebook.yamlparse, imported on the first `load_yaml` only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RuleProblem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleFileError(Exception):
    """One or more problems in marketer files; str() lists them as file:line: message."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class YamlDoc:
    file: str
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest known prefix of `loc` (1-based)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, loc: Loc, message: str) -> RuleProblem:
        return RuleProblem(self.file, self.line_of(loc), message)


def load_yaml(path: Path, display: str | None = None) -> YamlDoc:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RuleFileError(
            [RuleProblem(name, 1, "cannot read file: it does not exist; the rules need it")]
        ) from exc
    except OSError as exc:
        raise RuleFileError([RuleProblem(name, 1, f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError([RuleProblem(name, 1, "file is not UTF-8 text; save it as UTF-8")]) from exc
    # PyYAML on first use only (see nudge.rulebook.yamlparse): the one lazy import of the rulebook.
    from nudge.rulebook.yamlparse import parse_document

    return parse_document(name, text)


def validate(doc: YamlDoc, model: type[M]) -> M:
    """Validate a document against a model, turning pydantic errors into file:line problems."""
    if doc.data is None:
        raise RuleFileError([RuleProblem(doc.file, 1, "file is empty")])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc: Loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            where = ".".join(str(p) for p in loc) or "top level"
            message = plain_error(err)
            if err["type"] == "extra_forbidden" and loc:
                hint = did_you_mean(str(loc[-1]), _keys_at(model, loc[:-1]))
                message = f"unknown key{hint}" if hint else message
            problems.append(doc.problem(loc, f"{where}: {message}"))
        raise RuleFileError(problems) from exc


def plain_error(err: Any) -> str:
    """One pydantic error in a marketer's words, with the value that was given."""
    kind: str = err["type"]
    given = _given(err.get("input"))
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {given}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {given}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {given}"
    if kind == "string_type":
        return f"expected text, got {given}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected keys and values (key: value), got {given}"
    if kind == "list_type":
        return f"expected a list (- item lines or [a, b]), got {given}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(err["input"], options) if isinstance(err.get("input"), str) else ""
        return f"expected {ctx.get('expected')}, got {given}{hint}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {given}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {given}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{given} is not a valid name; use lower_snake_case (letters, digits, underscores)"
    message: str = str(err["msg"]).removeprefix("Value error, ")
    return message[0].lower() + message[1:] if message else kind


def _given(value: Any) -> str:
    if isinstance(value, dict):
        return "keys and values"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a model accepts at `loc` (through nested models, lists and dicts), for suggestions."""
    current: Any = model
    for part in loc:
        current = _optional_of(current)
        if get_origin(current) in (list, dict):
            current = get_args(current)[-1]  # `part` is a list index or a dict key: go to the item
        elif _is_model(current) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _optional_of(current)
    return list(current.model_fields) if _is_model(current) else []


def _optional_of(annotation: Any) -> Any:
    """X from `X | None`."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if get_origin(annotation) in (Union, UnionType) and len(args) == 1 else annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def display_path(rules_dir: Path, name: str) -> str:
    """A rule file's path as the marketer sees it: relative to where they ran the command."""
    path = rules_dir / name
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
