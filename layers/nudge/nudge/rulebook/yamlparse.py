"""The YAML half of nudge.rulebook.yamlfile: PyYAML parses a rule file's text, and every key's line
is kept so a problem can say file:line.

Imported by `yamlfile.load_yaml` on its first call, never at import: a function that reads the
rules snapshot (nudge.rulebook.snapshot) parses no YAML, so its cold start does not import PyYAML
(BENCHMARKS.md section 7; tests/integration/test_cold_start_imports.py names where it may load).
"""

from __future__ import annotations

from typing import Any

import yaml

from nudge.rulebook.yamlfile import Loc, RuleFileError, RuleProblem, YamlDoc


def parse_document(name: str, text: str) -> YamlDoc:
    """`text` (the file `name`) as a YamlDoc; RuleFileError naming the line of a syntax error or
    of a key given twice."""
    try:
        node, data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = _yaml_words(exc.problem or exc.context or "invalid YAML")
        # The problem is often found lines after its cause (an unclosed { or [): name where the
        # construct that went wrong started, too.
        start = exc.context_mark.line + 1 if exc.context_mark and exc.context else line
        where = f"; {exc.context} on line {start}" if start != line else ""
        raise RuleFileError(
            [RuleProblem(name, line, f"YAML syntax error: {what}{where} (check indentation and quoting)")]
        ) from exc
    except yaml.YAMLError as exc:
        raise RuleFileError([RuleProblem(name, 1, f"YAML error: {exc}")]) from exc
    lines: dict[Loc, int] = {}
    duplicates: list[tuple[int, str]] = []
    if node is not None:
        _walk(node, (), lines, duplicates)
    if duplicates:
        raise RuleFileError([RuleProblem(name, line, message) for line, message in duplicates])
    return YamlDoc(name, data, lines)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], duplicates: list[tuple[int, str]]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            if child in lines and isinstance(key, yaml.ScalarNode):
                # PyYAML keeps the last of two equal keys without a word: a marketer's copy-paste
                # of an event or a milestone would silently replace the first.
                duplicates.append(
                    (key.start_mark.line + 1, f"duplicate key '{key.value}' (also on line {lines[child]})")
                )
                continue  # its own keys would all repeat the first one's: one problem is enough
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, duplicates)


# libyaml (PyYAML's C parser) when the wheel carries it, as the Lambda layer's does: the pure-Python
# parser took most of a cold start's rule loading.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for the lines) and its data. A text the C parser refuses is parsed
    again by the pure-Python one, so a syntax error reads exactly as it always has."""
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER), yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - CSafeLoader is safe_load's loader in C
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


# PyYAML's words for the syntax errors marketers make most, and what they mean.
_YAML_PROBLEMS = {
    "expected <block end>, but found": "this line's indentation does not match the lines above it",
    "mapping values are not allowed here": "unexpected ':' (quote text holding ': ', or fix the indentation)",
    "found character '\\t' that cannot start any token": "a tab; indent with spaces",
    "could not find expected ':'": "a key without ':' after it, or a line indented too far",
}


def _yaml_words(problem: str) -> str:
    for words, meaning in _YAML_PROBLEMS.items():
        if problem.startswith(words):
            return f"{meaning} [{problem}]"
    return problem
