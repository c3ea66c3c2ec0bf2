"""The layers contract (pyproject.toml [tool.importlinter]) holds, and would catch an import that
runs back up the layers: a copy of the package with one wrong import breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "nudge" / "nudge"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(  # noqa: S603 - the venv's own lint-imports on our own config
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "nudge", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_package_keeps_the_layers_contract() -> None:
    result = lint_imports(ROOT / "layers" / "nudge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_model_module_importing_a_tool_breaks_the_contract(tmp_path: Path) -> None:
    # Given a copy of the package where a shared type imports the CLI
    parent = copy_of_package(tmp_path)
    state = parent / "nudge" / "model" / "state.py"
    state.write_text(state.read_text() + "\nfrom nudge.tools import cli  # noqa: E402,F401\n")
    # When the contract is checked
    result = lint_imports(parent)
    # Then it fails, naming the import that runs up
    assert result.returncode != 0
    assert "nudge.model.state -> nudge.tools.cli" in result.stdout


def test_a_domain_module_calling_boto3_breaks_the_contract(tmp_path: Path) -> None:
    # Given a copy of the package where the pure fold makes an AWS client, inside a function
    parent = copy_of_package(tmp_path)
    fold = parent / "nudge" / "domain" / "fold.py"
    fold.write_text(fold.read_text() + "\n\ndef _client() -> object:\n    import boto3\n\n    return boto3\n")
    # When the contract is checked
    result = lint_imports(parent)
    # Then the pure-core contract fails: an import inside a function counts too
    assert result.returncode != 0
    assert "nudge.domain is not allowed to import boto3" in result.stdout
