"""`nudge rules lint | test | backtest | explain | schema`: what a marketer sees, and never a traceback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from nudge.rulebook.cases import LoadedCase, load_cases, resolve_when
from nudge.rulebook.condition_specs import LEAVES
from nudge.rulebook.loader import load_rules
from nudge.rulebook.schema import rule_schemas
from nudge.tools.cli import main
from nudge.tools.rules import commands
from nudge.tools.rules.backtest import backtest
from nudge.tools.rules.history import parse_messages
from nudge.tools.rules.test import run_case
from nudge.tools.samples.generator import build_history
from nudge.tools.samples.ndjson import read_ndjson, write_ndjson
from tests.shipped import ONE_SHOT_DIR

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "rules"
CORPUS = ROOT / "tests" / "rules_corpus"
PROBLEM_LINE = re.compile(r"^rules/[\w./-]+:\d+: \S")


def nudge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def rules_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the rules with the one-shot triggers (tests/shipped.py) in an empty folder that is
    also the working directory."""
    target = tmp_path / "rules"
    shutil.copytree(ONE_SHOT_DIR, target)
    monkeypatch.chdir(tmp_path)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# ------------------------------------------------------------------------------ the shipped rules


def test_lint_passes_on_the_shipped_rules(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = nudge(capsys, "rules", "lint", "rules")
    assert code == 0
    assert out.startswith("rules: OK")


def test_every_shipped_rule_test_passes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = nudge(capsys, "rules", "test", "rules")
    assert code == 0, out
    assert " 0 failed" in out
    assert "FAIL" not in out


def test_every_segment_trigger_and_band_has_a_case() -> None:
    rules = load_rules(ONE_SHOT_DIR)
    cases, problems = load_cases(ONE_SHOT_DIR, rules)
    assert problems == []
    segments = {c.expect.segment for c in cases}
    fired = {r for c in cases for r in c.expect.fires}
    missed = {r for c in cases for r in c.expect.not_fires}
    assert {s.id for s in rules.segments} <= segments
    assert {t.id for t in rules.triggers} <= fired
    assert {t.id for t in rules.triggers} <= missed  # and a near miss for each
    assert {c.expect.band for c in cases} >= {"high", "mid", "low"}
    assert {c.expect.account_band for c in cases} >= {"high", "mid", "low"}


def test_a_wrong_expectation_fails_with_the_conditions_behind_it(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a case that expects a dormant user where the rules say not_activated
    _replace(
        rules_copy / "tests" / "segments.yaml",
        "  - name: a user who signed up two days ago and did nothing else is not activated\n"
        "    given:\n"
        "      - {event: signed_up, at: -2d}\n"
        "    expect:\n"
        "      segment: not_activated\n",
        "  - name: a user who signed up two days ago and did nothing else is not activated\n"
        "    given:\n"
        "      - {event: signed_up, at: -2d}\n"
        "    expect:\n"
        "      segment: dormant\n"
        "      fires: [rescue_dormant]\n",
    )
    # When the tests run
    code, out, _ = nudge(capsys, "rules", "test", "rules")
    # Then that case fails, saying what differed and why, and the run exits 1
    assert code == 1
    assert "FAIL rules/tests/segments.yaml:" in out
    assert "segment: expected dormant, got not_activated" in out
    assert "fires: expected rescue_dormant to fire; it did not" in out
    assert "✗ days without meaningful event (any): 2 (needs at least 30)" in out
    assert re.search(r"\d+ passed, 1 failed", out)


def test_k_runs_only_the_matching_cases(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = nudge(capsys, "rules", "test", "rules", "-k", "upgrade_power_user")
    assert code == 0
    assert out.count("PASS") == 3


# ------------------------------------------------------------------------------ the corpus


def _corpus() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if (p / "case.yaml").is_file())


def _break(rules: Path, case: dict[str, Any], name: str) -> None:
    for edit in case.get("edit", []):
        path = rules / edit["file"]
        text = path.read_text(encoding="utf-8")
        assert edit["replace"] in text, f"corpus case {name}: {edit['file']} changed; update its edit"
        path.write_text(text.replace(edit["replace"], edit["with"], 1), encoding="utf-8")
    for write in case.get("write", []):
        path = rules / write["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(write["text"], encoding="utf-8")
    for name_ in case.get("remove", []):
        (rules / name_).unlink()


def _expected_line(rules: Path, expect: dict[str, Any]) -> int:
    if "line" in expect:
        return int(expect["line"])
    lines = (rules / expect["file"]).read_text(encoding="utf-8").splitlines()
    hits = [i for i, line in enumerate(lines, start=1) if expect["line_of"] in line]
    occurrence = int(expect.get("occurrence", 1))
    assert len(hits) >= occurrence, (
        f"{expect['line_of']!r} not found {occurrence} time(s) in {expect['file']}"
    )
    return hits[occurrence - 1] + int(expect.get("offset", 0))


@pytest.mark.parametrize("case_dir", _corpus(), ids=lambda p: p.name)
def test_lint_refuses_each_broken_rule_set_with_file_line_and_no_traceback(
    case_dir: Path, rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the shipped rules broken one way
    case = yaml.safe_load((case_dir / "case.yaml").read_text(encoding="utf-8"))
    _break(rules_copy, case, case_dir.name)
    # When lint runs
    code, out, err = nudge(capsys, "rules", "lint", "rules")
    # Then it exits 1 and prints exactly the expected problems as file:line: message
    assert code == 1
    printed = out.splitlines()
    assert all(PROBLEM_LINE.match(line) for line in printed), out
    for expect in case["expect"]:
        prefix = f"rules/{expect['file']}:{_expected_line(rules_copy, expect)}: "
        assert any(line.startswith(prefix) and expect["says"] in line for line in printed), (
            f"expected a line starting {prefix!r} saying {expect['says']!r}; got:\n{out}"
        )
    assert len(printed) == len(case["expect"]), out
    assert "problem" in err


def test_the_corpus_covers_each_kind_of_breakage() -> None:
    names = {p.name for p in _corpus()}
    for needed in (
        "event_typo_in_trigger",
        "feature_typo_in_scoring",
        "milestone_typo_in_trigger",
        "segment_typo_in_trigger",
        "trait_typo_in_trigger",
        "template_typo_in_trigger",
        "priority_not_a_number",
        "unknown_trigger_key",
        "impossible_window",
        "duplicate_trigger_id",
        "yaml_unclosed_brace",
        "template_syntax_error",
        "segment_refers_to_segment",
        "catch_all_not_last",
    ):
        assert needed in names


# ------------------------------------------------------------------------------ lint edges


def test_lint_of_a_missing_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = nudge(capsys, "rules", "lint", "rulez")
    assert code == 1
    assert out.strip() == "rulez: no such folder; give the folder that holds tracking-plan.yaml"


def test_a_file_that_is_not_utf8_is_named(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rules_copy / "scoring.yaml").write_bytes(b"user:\n  signals: \xff\xfe\n")
    code, out, _ = nudge(capsys, "rules", "lint", "rules")
    assert code == 1
    assert "rules/scoring.yaml:1: file is not UTF-8 text; save it as UTF-8" in out


def test_a_folder_where_a_file_belongs_is_named(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rules_copy / "milestones.yaml").unlink()
    (rules_copy / "milestones.yaml").mkdir()
    code, out, _ = nudge(capsys, "rules", "lint", "rules")
    assert code == 1
    assert "rules/milestones.yaml:1: cannot read file" in out


def test_a_crash_inside_nudge_is_one_line_not_a_traceback(
    rules_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_dir: Path) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(commands, "load_rules", explode)
    code, _, err = nudge(capsys, "rules", "lint", "rules")
    assert code == 1
    assert "internal error, not a problem in your files: KeyError" in err


# ------------------------------------------------------------------------------ test cases


def test_relative_times_count_back_from_the_case_time() -> None:
    at = resolve_when("2026-06-17T12:00:00Z", resolve_when("now", commands.DEFAULT_CASE_AT))
    assert resolve_when("-3d12h", at).isoformat() == "2026-06-14T00:00:00+00:00"
    assert resolve_when("-2w", at).isoformat() == "2026-06-03T12:00:00+00:00"
    assert resolve_when("now", at) == at


def test_a_repeated_event_needs_every(rules_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rules_copy / "tests" / "extra.yaml").write_text(
        "cases:\n"
        "  - name: daily\n"
        "    given:\n"
        "      - {event: project_created, at: -5d, times: 5}\n"
        "    expect: {segment: not_activated}\n",
        encoding="utf-8",
    )
    code, out, _ = nudge(capsys, "rules", "lint", "rules")
    assert code == 1
    assert (
        "rules/tests/extra.yaml:4: cases.0.given.0: times needs every (how far apart), e.g. every: 1d" in out
    )


def test_a_case_with_nothing_expected_is_refused(
    rules_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rules_copy / "tests" / "extra.yaml").write_text(
        "cases:\n  - name: vague\n    expect: {}\n", encoding="utf-8"
    )
    code, out, _ = nudge(capsys, "rules", "test", "rules")
    assert code == 1
    assert "say what to expect" in out


def test_a_case_judges_one_user_with_traits_and_account() -> None:
    rules = load_rules(ONE_SHOT_DIR)
    cases, _ = load_cases(ONE_SHOT_DIR, rules)
    case = next(c for c in cases if c.name.startswith("rescue_declining also escalates"))
    failures, judged = run_case(rules, case)
    assert failures == []
    assert judged is not None
    assert judged.account is not None
    assert judged.account.traits["mrr"] == 4000
    assert {d.action for d in judged.evaluation.decisions if d.rule == "rescue_declining"} == {
        "push",
        "escalate",
    }


def test_case_messages_are_what_a_product_would_send() -> None:
    rules = load_rules(ONE_SHOT_DIR)
    cases, _ = load_cases(ONE_SHOT_DIR, rules)
    case: LoadedCase = next(c for c in cases if c.name.startswith("upgrade_power_user - a power user"))
    kinds = [m.type for m in case.messages]
    assert kinds.count("track") == 52
    assert kinds.count("identify") == 1
    assert all(m.timestamp is not None and m.timestamp <= case.at for m in case.messages)


# ------------------------------------------------------------------------------ explain & backtest


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three weeks of a small sample product: every persona, quick to replay."""
    from datetime import UTC, datetime

    path = tmp_path_factory.mktemp("history") / "events.ndjson"
    made = build_history(users=40, accounts=5, days=28, seed=3, start=datetime(2026, 3, 2, tzinfo=UTC))
    write_ndjson(path, made.messages())
    return path


def test_explain_shows_each_segment_and_trigger_with_values(
    history: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    code, out, _ = nudge(capsys, "rules", "explain", "user-1", "--events", str(history))
    assert code == 0
    assert out.startswith("user-1 at 2026-03-")
    assert "Segments, in order: user-1 is in the first that holds -> " in out
    for segment in ("dormant", "not_activated", "newly_activated", "declining", "power", "habitual"):
        assert f"\n  {segment}: " in out
    for trigger in ("finish_setup", "rescue_declining", "at_risk_account"):
        assert f"\n  {trigger} (" in out
    assert re.search(r"[✓✗] days without meaningful event \(any\): [\d.]+ \(needs at least 30\)", out)


def test_explain_as_json_agrees_with_evaluate(
    history: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    code, out, _ = nudge(capsys, "rules", "explain", "user-2", "--events", str(history), "--json")
    assert code == 0
    data = json.loads(out)
    chosen = [s["id"] for s in data["segments"] if s["chosen"]]
    assert chosen == [data["segment"]]
    assert [t["id"] for t in data["triggers"] if t["fires"]] == data["fired"]


def test_explain_an_unknown_user_suggests_a_known_one(
    history: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    code, _, err = nudge(capsys, "rules", "explain", "usr-1", "--events", str(history))
    assert code == 1
    assert "usr-1: no messages for this user" in err
    assert "did you mean 'user-1'?" in err


def test_explain_at_an_earlier_time_ignores_later_events(
    history: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    _, late, _ = nudge(capsys, "rules", "explain", "user-1", "--events", str(history), "--json")
    code, early, _ = nudge(
        capsys,
        "rules",
        "explain",
        "user-1",
        "--events",
        str(history),
        "--json",
        "--at",
        "2026-03-09T00:00:00Z",
    )
    assert code == 0
    assert json.loads(early)["at"] == "2026-03-09T00:00:00Z"
    assert json.loads(early)["at"] < json.loads(late)["at"]


def test_explain_a_bad_events_file_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"type": "track"}\nnot json\n', encoding="utf-8")
    code, _, err = nudge(capsys, "rules", "explain", "u", "--events", str(bad))
    assert code == 1
    assert "bad.ndjson:2: invalid JSON" in err


def test_backtest_replays_day_by_day_and_counts_each_decision_once(history: Path) -> None:
    rules = load_rules(ONE_SHOT_DIR)
    messages, skipped = parse_messages(read_ndjson(history), str(history))
    result = backtest(rules, messages)
    assert skipped == []
    assert result.refused == []
    assert result.users == 40
    assert sum(result.final_sizes().values()) == 40  # every user is in exactly one segment
    assert len(result.weeks) >= 4
    # changed users and due re-checks: more than one per user, far fewer than every user every day
    assert 40 < result.evaluations < 40 * 28 // 2
    # A decision is counted once, and the same rule reaches the same user again (sent or held out)
    # only after its cooldown: dispatch's guardrails judged each one
    assert len({f.decision_id for f in result.fires}) == len(result.fires)
    keys = [(f.rule, f.user, f.at) for f in result.fires]
    assert len(keys) == len(set(keys))
    reached = [f for f in result.fires if f.outcome in ("send", "held_out")]
    for fire in reached:
        trigger = next(t for t in rules.triggers if t.id == fire.rule.removesuffix(" (escalate)"))
        later = [f for f in reached if (f.rule, f.user) == (fire.rule, fire.user) and f.at > fire.at]
        assert all(f.at - fire.at >= trigger.spec.cooldown for f in later)
    assert {f.rule for f in result.fires} >= {"finish_setup"}


def test_backtest_prints_rules_weeks_and_segments(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    fires = tmp_path / "fires.csv"
    code, out, _ = nudge(
        capsys, "rules", "backtest", "--events", str(history), "--weekly", "--fires-csv", str(fires)
    )
    assert code == 0
    assert "Backtest of" in out
    assert "40 users" in out
    assert "Decisions over the whole period, through every guardrail" in out
    assert "Per rule and ISO week: fired, sent, held out, and suppressed by reason" in out
    assert "rule_holdout" in out or "held out" in out
    assert "2026-W10" in out
    assert "Segment sizes at each ISO week's end" in out
    rows = fires.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "at,week,rule,action,channel,user,account,segment,outcome,reason,settled_at"
    assert len(rows) > 1


def test_backtest_of_a_missing_file_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    code, _, err = nudge(capsys, "rules", "backtest", "--events", "nope.ndjson")
    assert code == 1
    assert "nope.ndjson: cannot read" in err


def test_backtest_with_broken_rules_lists_the_problems(
    rules_copy: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _replace(rules_copy / "triggers.yaml", "priority: 60", "priority: high")
    code, out, _ = nudge(capsys, "rules", "backtest", "--events", str(history), "--rules", "rules")
    assert code == 1
    assert "rules/triggers.yaml:" in out
    assert "expected a whole number, got 'high'" in out


# ------------------------------------------------------------------------------ schema


def test_the_committed_schemas_are_up_to_date(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = nudge(capsys, "rules", "schema", "--check")
    assert code == 0, f"{out}\nrun `nudge rules schema` and commit rules/schema/"


def test_schema_writes_one_file_per_kind_of_rule_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = nudge(capsys, "rules", "schema", "--out", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(rule_schemas())
    assert out.count("wrote ") == len(rule_schemas())


def test_each_shipped_rule_file_points_editors_at_its_schema() -> None:
    for path in sorted(SHIPPED.glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == f"# yaml-language-server: $schema=schema/{path.stem}.schema.json", path.name
        assert (SHIPPED / "schema" / f"{path.stem}.schema.json").is_file()
    for path in sorted((SHIPPED / "tests").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schema/tests.schema.json", path.name


def test_the_condition_schema_names_every_condition_of_the_language() -> None:
    condition = rule_schemas()["triggers.schema.json"]["$defs"]["Condition"]
    assert set(condition["properties"]) == {"all", "any", "not", *LEAVES}
    assert condition["maxProperties"] == 1
    assert condition["additionalProperties"] is False
    feature = rule_schemas()["triggers.schema.json"]["$defs"]["Condition_feature"]
    assert set(feature["properties"]) == {"name", "is"}  # as marketers write it, not is_


def _validator(name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft7Validator(rule_schemas()[name])


def _yaml_as_json(path: Path) -> Any:
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def test_the_shipped_files_are_valid_against_their_schemas() -> None:
    for path in sorted(SHIPPED.glob("*.yaml")):
        errors = list(_validator(f"{path.stem}.schema.json").iter_errors(_yaml_as_json(path)))
        assert errors == [], (path.name, [e.message for e in errors])
    for path in sorted((SHIPPED / "templates").glob("*.yaml")):
        assert list(_validator("template.schema.json").iter_errors(_yaml_as_json(path))) == []
    for path in sorted((SHIPPED / "tests").glob("*.yaml")):
        assert list(_validator("tests.schema.json").iter_errors(_yaml_as_json(path))) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("at_least: 30}", "at_lest: 30}"),  # unknown key in a condition
        ("days_since: {event: any", "days_snce: {event: any"),  # unknown condition
        ("cooldown: 3d", "cooldown: 3 days"),  # not a duration
        ("escalate_when: {account: {band: high}}", "escalate_when: {account: {band: hihg}}"),
        ("frequency: heavy", "frequency: hevy"),
        ("channel: [push, email]", "channel: [push, email]\n    action: push"),  # action and channel
        ("channel: [push, email]", "channel: [push, pigeon]"),  # not a channel
        ("    action: email\n    template: come_back", "    template: come_back"),  # neither
    ],
)
def test_an_editor_flags_what_lint_would_refuse(old: str, new: str) -> None:
    for name in ("segments", "triggers"):
        text = (ONE_SHOT_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        if old in text:
            data = json.loads(json.dumps(yaml.safe_load(text.replace(old, new, 1)), default=str))
            assert list(_validator(f"{name}.schema.json").iter_errors(data)) != []
            return
    pytest.fail(f"{old!r} is in no shipped file")


def test_explain_counts_the_anonymous_steps_an_identify_merged_into_the_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a history whose onboarding was sent anonymously before the identify
    monkeypatch.chdir(ONE_SHOT_DIR.parent)
    steps = [
        {"type": "track", "anonymousId": "dev-9", "event": event, "timestamp": f"2026-03-02T10:0{i}:00Z"}
        for i, event in enumerate(["setup_completed", "project_created", "teammate_invited"])
    ]
    signup = {
        "type": "identify",
        "userId": "ada",
        "anonymousId": "dev-9",
        "timestamp": "2026-03-02T11:00:00Z",
    }
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(m) for m in [*steps, signup]) + "\n")
    # When the user is explained
    code, out, _ = nudge(capsys, "rules", "explain", "ada", "--events", str(path), "--json")
    # Then what the device did counts: the user is newly activated
    assert code == 0
    assert json.loads(out)["segment"] == "newly_activated"
