"""The layers contract (pyproject.toml [tool.importlinter]) holds, and would catch an import that
runs back up the layers: a copy of the package with one wrong import breaks it. And a Lambda's
app.py is wiring only: of nudge it imports entrypoints and observability, nothing else."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nudge.tools.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "nudge" / "nudge"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
APP_MAY_IMPORT = ("nudge.entrypoints", "nudge.observability")


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


def wrong_app_imports(source: str) -> list[str]:
    """The nudge modules an app.py imports beyond entrypoints and observability."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "nudge" else [f"nudge.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.split(".")[0] == "nudge" and not n.startswith(APP_MAY_IMPORT)]
    return found


def test_every_lambda_app_imports_only_entrypoints_and_observability() -> None:
    apps = sorted((ROOT / "functions").glob("*/app.py"))
    resources = load_template(ROOT / "template.yaml")["Resources"].values()
    code = {r["Properties"]["CodeUri"] for r in resources if r["Type"] == "AWS::Serverless::Function"}
    assert {str(app.parent.relative_to(ROOT)) for app in apps} == code  # every function's app is checked
    assert {str(app.relative_to(ROOT)): wrong_app_imports(app.read_text()) for app in apps} == {
        str(app.relative_to(ROOT)): [] for app in apps
    }


def test_an_app_reaching_past_the_entrypoints_is_caught() -> None:
    # Given an app.py that calls a use case and the clock itself
    source = (
        "from nudge import clock\nfrom nudge.services.evaluate import sweep\nimport nudge.observability\n"
    )
    # Then both imports past the entrypoints are named, and observability is not
    assert wrong_app_imports(source) == ["nudge.clock", "nudge.services.evaluate"]


# Imports inside functions, each with its reason: the CLI starts without moto (the local stack's
# modules import it), so `nudge --help` stays fast; Powertools' OpenAPI models (some sixty pydantic
# models built at import) are needed only to serve the OpenAPI document, not in the ingest function's
# cold start (Powertools itself defers them the same way); a function reading the rules snapshot
# parses no YAML and runs no rule-file loader (YAML, the condition parsers, Jinja), so both are
# imported only when the files are loaded; Babel, by the first value a template formats (BENCHMARKS.md
# section 7).
DEFERRED_IMPORTS = {
    "nudge/tools/local/commands.py": {
        "nudge.tools.local.http",
        "nudge.tools.local.stack",
        "nudge.tools.local.demo",
    },
    "nudge/entrypoints/http/access.py": {"aws_lambda_powertools.event_handler.openapi.models"},
    "nudge/rulebook/yamlfile.py": {"nudge.rulebook.yamlparse"},
    "nudge/bootstrap/ruleset.py": {"nudge.rulebook.loader"},
    "nudge/domain/formats.py": {"nudge.domain.cldr"},
}


def imports_inside_functions(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module:
                    found.add(inner.module)
                elif isinstance(inner, ast.Import):
                    found.update(alias.name for alias in inner.names)
    return found


def test_no_module_imports_inside_a_function_except_the_deferred_cli_ones() -> None:
    # An import inside a function can hide a cycle that a module-level one would show.
    found = {
        str(path.relative_to(PACKAGE.parent)): imports
        for path in sorted(PACKAGE.rglob("*.py"))
        if (imports := imports_inside_functions(path.read_text()))
    }
    assert found == DEFERRED_IMPORTS


def test_an_import_inside_a_function_is_found() -> None:
    source = "import json\n\ndef f() -> None:\n    from nudge.services import ingest\n    import re\n"
    assert imports_inside_functions(source) == {"nudge.services", "re"}
