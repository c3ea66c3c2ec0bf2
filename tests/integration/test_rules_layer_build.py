"""`sam build` refuses broken rules: the RulesLayer's build target (rules/Makefile) runs
`nudge rules lint` and `nudge rules test` first, with their file:line messages, and packs nothing
when either fails. Run here as sam build runs it: `make --makefile <rules>/Makefile
build-RulesLayer` from a copy of the folder, with ARTIFACTS_DIR set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "layers" / "nudge"


def build(rules: Path, tmp_path: Path, layer: Path = LAYER) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The build target of `rules`/Makefile, in a copy of the folder (as sam build's CopySource)."""
    scratch, artifacts = tmp_path / "scratch", tmp_path / "artifacts"
    shutil.copytree(rules, scratch)
    env = {**os.environ, "ARTIFACTS_DIR": str(artifacts), "NUDGE_PYTHON": sys.executable}
    env["NUDGE_LAYER"] = str(layer)
    done = subprocess.run(  # noqa: S603 - make on our own Makefile, arguments from this test
        ["make", "--makefile", str(rules / "Makefile"), "build-RulesLayer"],  # noqa: S607 - as sam runs it
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done, artifacts / "rules"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "repo" / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def test_the_shipped_rules_pass_the_build_and_are_packed(tmp_path: Path) -> None:
    done, packed = build(REPO / "rules", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rules: OK" in done.stdout
    assert " passed, 0 failed" in done.stdout
    assert (packed / "triggers.yaml").is_file()
    assert (packed / "templates").is_dir()


def test_a_broken_rule_file_stops_the_build_with_its_file_and_line(rules_copy: Path, tmp_path: Path) -> None:
    # Given a journey that names an event the tracking plan does not have
    _replace(rules_copy / "journeys" / "upgrade.yaml", "premium_feature_attempted", "premium_feature_attempt")
    # When the layer builds
    done, packed = build(rules_copy, tmp_path)
    # Then it fails, naming the file and line as `nudge rules lint` does, and packs nothing
    assert done.returncode != 0
    assert "rules/journeys/upgrade.yaml:" in done.stdout
    assert "premium_feature_attempt'" in done.stdout
    assert "sam build stopped: fix the rule files" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not packed.exists()


def test_a_failing_rule_test_stops_the_build(rules_copy: Path, tmp_path: Path) -> None:
    # Given a case whose expectation the rules do not meet
    _replace(
        rules_copy / "tests" / "segments.yaml",
        "    expect:\n      segment: not_activated\n",
        "    expect:\n      segment: dormant\n",
    )
    done, packed = build(rules_copy, tmp_path)
    assert done.returncode != 0
    assert "FAIL rules/tests/segments.yaml:" in done.stdout
    assert "sam build stopped: a rule test fails" in done.stderr
    assert not packed.exists()


def test_without_the_nudge_package_the_build_stops_and_says_why(rules_copy: Path, tmp_path: Path) -> None:
    # Given a build that cannot see layers/nudge (a --use-container build mounts only rules/)
    done, packed = build(rules_copy, tmp_path, layer=tmp_path / "nowhere")
    # Then it refuses to ship unchecked rules, saying what to do
    assert done.returncode != 0
    assert "cannot check the rules: no nudge package in" in done.stderr
    assert "build without it, or set NUDGE_LAYER" in done.stderr
    assert not packed.exists()
