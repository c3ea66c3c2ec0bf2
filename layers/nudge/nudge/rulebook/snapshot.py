"""The rule set as `sam build` checked it, so a Lambda's cold start does not check it again.

The rules layer's build (rules/Makefile) lints and tests the rule files, copies them, then writes
`.ruleset.snapshot` beside them: the loaded RuleSet, pickled, under a fingerprint of those files
and of the code that loaded them (nudge.model, nudge.conditions, nudge.rulebook: every class the
pickle names lives there). At cold start, `read_snapshot` returns it only when the fingerprint of
the files and code it finds is the same, so a stale snapshot (a rule file or the layer's code
changed without the other layer being rebuilt) is never used: the files are loaded instead, as the
local stack and the CLI always do.

The file holds two pickles: the tracking plan alone, then the rule set. The ingest functions read
the plan (`read_plan_snapshot`: no YAML parsed, no plan model built, none of the rule set's types
imported); the functions that run the rules read the rule set. This module imports neither type, so
reading the plan never imports the rule set's modules.

The rule files' models (nudge.rulebook.*_specs, plan, guardrails, templates, destinations) are
built on their first validation (pydantic's defer_build), not at import: a function that loads the
snapshot never validates a rule file, so it never builds them.

The pickle is Nudge's own build output, shipped in its own layer like its code; the loader still
refuses any class outside those three packages (and a few value types of the standard library).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import pydantic_core

if TYPE_CHECKING:  # for the signatures alone: read_plan_snapshot must not import the rule set's modules
    from nudge.rulebook.plan import TrackingPlan
    from nudge.rulebook.ruleset import RuleSet

SNAPSHOT_FILE = ".ruleset.snapshot"
# Bumped when the file's layout changes; part of the first line.
_FORMAT = b"nudge-ruleset-snapshot 2"
# What each of the two pickles must hold (checked by name: see the module's docstring).
_PLAN = "nudge.rulebook.plan.TrackingPlan"
_RULE_SET = "nudge.rulebook.ruleset.RuleSet"
# The packages whose classes a rule set holds: their code is part of the fingerprint.
_CODE = ("model", "conditions", "rulebook")
_PACKAGE = Path(__file__).resolve().parent.parent
# What else a rule set's pickle may name: value types (and how pickle rebuilds objects).
_STDLIB = {
    "builtins": {"object", "set", "frozenset", "list", "dict", "tuple"},
    "copyreg": {"_reconstructor", "__newobj__", "__newobj_ex__"},
    "datetime": {"date", "datetime", "time", "timedelta", "timezone"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath"},
    "decimal": {"Decimal"},
}


class SnapshotError(Exception):
    """A snapshot could not be written or read back (a rule set holding something unpicklable)."""


def fingerprint(rules_dir: Path) -> str:
    """SHA-256 of every file under `rules_dir` (but the snapshot) and of the code in _CODE."""
    digest = hashlib.sha256(_FORMAT)
    digest.update(code_fingerprint().encode())
    _add_files(digest, rules_dir, "*", "rules")
    return digest.hexdigest()


def code_fingerprint() -> str:
    """SHA-256 of the code in _CODE. `make sam-build` writes it into rules/ first, so that a cached
    build (samconfig.toml) rebuilds the rules layer, and its snapshot, when only the code changed."""
    digest = hashlib.sha256(_FORMAT)
    # The models pickle through pydantic: a layer built with another pydantic (requirements allow
    # a range) might not read them back the same.
    digest.update(f"pydantic {pydantic.VERSION} pydantic-core {pydantic_core.__version__}\0".encode())
    for name in _CODE:
        _add_files(digest, _PACKAGE / name, "*.py", f"nudge/{name}")
    return digest.hexdigest()


def _add_files(digest: Any, root: Path, pattern: str, label: str) -> None:
    for path in sorted(root.rglob(pattern)):
        if path.name == SNAPSHOT_FILE or not path.is_file() or "__pycache__" in path.parts:
            continue
        data = path.read_bytes()
        name = f"{label}/{path.relative_to(root).as_posix()}".encode()
        digest.update(b"%s\0%d\0" % (name, len(data)))
        digest.update(data)


def write_snapshot(rules: RuleSet, rules_dir: Path) -> Path:
    """Write `rules` (loaded from `rules_dir`) as rules_dir/.ruleset.snapshot: the plan's pickle, then
    the rule set's, each read back to be sure."""
    try:
        plan = pickle.dumps(rules.plan, protocol=pickle.HIGHEST_PROTOCOL)
        body = pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)
        _load(plan, _PLAN)
        _load(body, _RULE_SET)
    except (pickle.PicklingError, TypeError, AttributeError, SnapshotError) as exc:
        raise SnapshotError(f"the rule set cannot be snapshot: {exc}") from exc
    path = rules_dir / SNAPSHOT_FILE
    header = _FORMAT + b" " + fingerprint(rules_dir).encode() + b"\n"
    path.write_bytes(header + b"%d\n" % len(plan) + plan + body)
    return path


def read_snapshot(rules_dir: Path) -> tuple[RuleSet | None, str]:
    """The snapshot's rule set and "", or None and why not ("" when there is no snapshot: the
    rules were never built, as in the local stack). Never a rule set of other files or code."""
    rules: RuleSet | None
    rules, why_not = _read(rules_dir, _RULE_SET)
    return rules, why_not


def read_plan_snapshot(rules_dir: Path) -> tuple[TrackingPlan | None, str]:
    """The snapshot's tracking plan and "", or None and why not (as read_snapshot): what the ingest
    functions run, read without the rule set's pickle or its modules."""
    plan: TrackingPlan | None
    plan, why_not = _read(rules_dir, _PLAN)
    return plan, why_not


def _read(rules_dir: Path, kind: str) -> tuple[Any, str]:
    path = rules_dir / SNAPSHOT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    header, _, rest = data.partition(b"\n")
    form, _, stamp = header.rpartition(b" ")
    if form != _FORMAT:
        return None, f"{path.name}: written by another version of Nudge"
    if stamp.decode() != fingerprint(rules_dir):
        return None, f"{path.name}: stale (the rule files or Nudge's code changed since it was written)"
    try:
        size, _, pickles = rest.partition(b"\n")
        plan_size = int(size)
        body = pickles[:plan_size] if kind == _PLAN else pickles[plan_size:]
        return _load(body, kind), ""
    except Exception as exc:  # whatever a bad snapshot raises, the rule files still load
        return None, f"{path.name}: unreadable ({type(exc).__name__}: {exc})"


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _STDLIB.get(module, ()) or any(module.startswith(f"nudge.{p}.") for p in _CODE):
            return super().find_class(module, name)
        raise SnapshotError(f"{module}.{name} is not a rule set's type")


def _load(body: bytes, kind: str) -> Any:
    found = _Unpickler(io.BytesIO(body)).load()
    # By name: importing the class to compare would import the rule set's modules for the plan too.
    # The unpickler has already refused any class outside Nudge's own packages.
    name = f"{type(found).__module__}.{type(found).__qualname__}"
    if name != kind:
        raise SnapshotError(f"holds a {type(found).__name__}, not a {kind.rsplit('.', 1)[1]}")
    return found
