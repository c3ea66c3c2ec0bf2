"""The rules snapshot (nudge.rulebook.snapshot): what the rules layer's build writes beside the rule
files so the functions' cold start skips checking them again; never used once it no longer
matches the files and the code."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest

import nudge.bootstrap.plan as bootstrap_plan
import nudge.bootstrap.ruleset as bootstrap_rules
from nudge.conditions.facts import count_fact
from nudge.rulebook import loader, snapshot
from nudge.rulebook.cases import load_cases
from nudge.rulebook.loader import load_rules
from nudge.rulebook.plan import load_plan
from nudge.rulebook.snapshot import SNAPSHOT_FILE, fingerprint, read_snapshot, write_snapshot
from nudge.tools.rules.test import run_case
from tests.shipped import ONE_SHOT_DIR, ROOT


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """rules/ as the rules layer's build leaves it: the files and their snapshot."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules_dir)
    write_snapshot(load_rules(rules_dir), rules_dir)
    return rules_dir


@pytest.mark.parametrize("source", [ROOT / "rules", ONE_SHOT_DIR], ids=["shipped", "one_shot"])
def test_a_snapshot_decides_every_rule_test_as_the_files_do(source: Path, tmp_path: Path) -> None:
    # Given a rule set written as a snapshot and read back
    rules_dir = tmp_path / "rules"
    shutil.copytree(source, rules_dir)
    loaded = load_rules(rules_dir)
    write_snapshot(loaded, rules_dir)
    # When every rule test of the folder runs against it
    restored, why_not = read_snapshot(rules_dir)
    assert restored is not None, why_not
    cases, problems = load_cases(rules_dir, restored)
    assert not problems
    # Then each case judges as it does on the rules loaded from the files, and passes
    for case in cases:
        assert run_case(restored, case) == run_case(loaded, case), case.name
        assert run_case(restored, case)[0] == [], case.name
    assert len(cases) > 10
    assert restored.spec_by_rule.keys() == loaded.spec_by_rule.keys()


def test_a_rule_file_changed_after_the_snapshot_makes_it_stale(built: Path) -> None:
    (built / "triggers.yaml").write_text((built / "triggers.yaml").read_text() + "\n# edited\n")
    rules, why_not = read_snapshot(built)
    assert rules is None
    assert "stale" in why_not


def test_a_rule_file_added_after_the_snapshot_makes_it_stale(built: Path) -> None:
    shutil.copy(
        built / "templates" / next(iter(sorted(p.name for p in (built / "templates").iterdir()))),
        built / "templates" / "zz_added.yaml",
    )
    assert read_snapshot(built)[0] is None


def test_the_code_that_loaded_the_rules_is_part_of_the_fingerprint(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the package's code copied, and the snapshot's fingerprint taken over that copy
    package = tmp_path / "nudge"
    for name in ("model", "conditions", "rulebook"):
        shutil.copytree(snapshot._PACKAGE / name, package / name)
    monkeypatch.setattr(snapshot, "_PACKAGE", package)
    write_snapshot(load_rules(built), built)
    assert read_snapshot(built)[0] is not None
    # When one module of the code changes (the other layer rebuilt without this one)
    tree = package / "conditions" / "tree.py"
    tree.write_text(tree.read_text() + "\n# changed\n")
    # Then the snapshot is not used
    assert "stale" in read_snapshot(built)[1]


def test_no_snapshot_is_no_reason_to_log(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path) == (None, "")


def test_a_snapshot_naming_any_other_type_is_refused(built: Path) -> None:
    # A pickle of something else, under the right fingerprint
    body = pickle.dumps(OrderedDict(a=1))
    stamp = fingerprint(built).encode()
    (built / SNAPSHOT_FILE).write_bytes(snapshot._FORMAT + b" " + stamp + b"\n" + b"0\n" + body)
    rules, why_not = read_snapshot(built)
    assert rules is None
    assert "collections.OrderedDict is not a rule set's type" in why_not


def test_the_cold_start_loads_the_snapshot_without_checking_the_files(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_load(rules_dir: Path) -> None:
        raise AssertionError("the files were loaded")

    monkeypatch.setattr(loader, "load_rules", must_not_load)
    rules = bootstrap_rules.load_rules_or_explain(built)
    assert {t.id for t in rules.triggers} == {t.id for t in load_rules(built).triggers}


def test_the_cold_start_loads_the_files_when_the_snapshot_is_stale(
    built: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a trigger renamed in the files after the snapshot was written
    triggers = built / "triggers.yaml"
    first = load_rules(built).triggers[0].id
    triggers.write_text(triggers.read_text().replace(f"id: {first}\n", "id: renamed_after_build\n", 1))
    # When the function starts
    with caplog.at_level(logging.WARNING):
        rules = bootstrap_rules.load_rules_or_explain(built)
    # Then it runs what the files say, and says why it did not use the snapshot
    assert "renamed_after_build" in {t.id for t in rules.triggers}
    (record,) = [r for r in caplog.records if r.getMessage().startswith("rules snapshot not used")]
    assert "stale" in record.reason


def test_a_fact_changed_after_its_factory_made_it_refuses_to_pickle() -> None:
    # A fact pickles as the call that made it; one changed since is not that call's any more
    made = count_fact("project_created", 7)
    assert pickle.loads(pickle.dumps(made)).key == made.key  # noqa: S301 - pickled just above
    changed = dataclasses.replace(made, key="something_else")
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(changed)


def test_a_snapshot_whose_body_is_garbage_is_refused_not_raised(built: Path) -> None:
    # A body cut short (a partial copy): whatever unpickling raises, the files load instead
    data = (built / SNAPSHOT_FILE).read_bytes()
    (built / SNAPSHOT_FILE).write_bytes(data[: len(data) // 2] + b"\x00garbage")
    rules, why_not = read_snapshot(built)
    assert rules is None
    assert "unreadable" in why_not


def test_the_pydantic_version_is_part_of_the_fingerprint(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = fingerprint(built)
    monkeypatch.setattr(snapshot.pydantic, "VERSION", "0.0.0")
    assert fingerprint(built) != before


def test_the_ingest_cold_start_reads_the_snapshots_plan_without_loading_the_files(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_load(rules_dir: Path) -> None:
        raise AssertionError("the plan's files were loaded")

    monkeypatch.setattr(bootstrap_plan, "load_plan", must_not_load)
    plan = bootstrap_plan.plan_or_explain(built)
    assert plan == load_plan(built)
    assert plan.events.keys() == load_rules(built).plan.events.keys()


def test_the_ingest_cold_start_loads_the_plan_when_the_snapshot_is_stale(
    built: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an event added to the tracking plan after the snapshot was written
    plan_file = built / "tracking-plan.yaml"
    assert "added_after_build" not in plan_file.read_text()
    plan_file.write_text(plan_file.read_text().replace("events:\n", "events:\n  added_after_build: {}\n", 1))
    # When an ingest function starts
    with caplog.at_level(logging.WARNING):
        plan = bootstrap_plan.plan_or_explain(built)
    # Then it runs what the files say, and says why it did not use the snapshot
    assert "added_after_build" in plan.events
    (record,) = [r for r in caplog.records if r.getMessage().startswith("rules snapshot not used")]
    assert "stale" in record.reason


def test_each_half_of_the_snapshot_refuses_the_other_halfs_type(built: Path) -> None:
    assert snapshot._load(pickle.dumps(load_plan(built)), snapshot._PLAN) is not None
    with pytest.raises(snapshot.SnapshotError, match="not a RuleSet"):
        snapshot._load(pickle.dumps(load_plan(built)), snapshot._RULE_SET)
