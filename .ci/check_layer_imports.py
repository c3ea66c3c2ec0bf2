"""Import every module the Lambdas can load, from what `sam build` put in the layer, and nothing else;
check that the layer holds no nudge/tools (CLI, local stack, demo: never run by a Lambda); and read
the rules layer's snapshot under the layer's packages, as a cold start does.

The Lambda runtime has the standard library and boto3 (with botocore, s3transfer, jmespath,
dateutil, urllib3, six); everything else must come from the NudgeLayer. A dependency the code
imports but layers/nudge/requirements.txt does not list passes every test run in .venv and fails
in AWS at the first cold start: this catches it at `make test`.

Run with the interpreter the runtime has (python3.11), after `sam build`:
    python .ci/check_layer_imports.py .aws-sam/build
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

# What the python3.11 runtime ships besides the standard library.
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
# The CLI, local stack, demo, samples and report rendering: never loaded by a Lambda, never shipped.
TOOLS = "nudge/tools"


def main(build: Path) -> int:
    layer = build / "NudgeLayer" / "python"
    if not layer.is_dir():
        print(f"{layer}: missing; run `sam build` first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as runtime:
        for name in RUNTIME:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                print(f"{name}: not installed here, cannot stand in for the runtime's", file=sys.stderr)
                return 1
            source = Path(spec.origin)
            source = source.parent if source.name == "__init__.py" else source
            os.symlink(source, Path(runtime) / source.name)
        if (layer / TOOLS).exists():
            print(f"{layer / TOOLS}: tools are in the Lambda layer; layers/nudge/Makefile leaves them out")
            return 1
        modules = [m.name for m in pkgutil.walk_packages([str(layer / "nudge")], prefix="nudge.")]
        # -S: no site-packages (neither the venv's nor the system's): only the layer and the
        # runtime's boto3 are on the path, as in Lambda.
        code = (
            "import importlib, sys\n"
            f"sys.path[:0] = {[str(layer), runtime]!r}\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
        )
        env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}
        result = subprocess.run(  # noqa: S603 - our own interpreter and module names
            [sys.executable, "-S", "-c", code, *modules], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            print(f"a module fails to import from the layer alone:\n{result.stderr}", file=sys.stderr)
            print("add what it needs to layers/nudge/requirements.txt", file=sys.stderr)
            return 1
        print(f"{len(modules)} nudge modules import from the layer alone (+ the runtime's boto3)")
        # The rules snapshot, read as a cold start reads it: under the layer's pydantic, not .venv's.
        rules = build / "RulesLayer" / "rules"
        check = (
            "import sys\n"
            f"sys.path[:0] = {[str(layer), runtime]!r}\n"
            "from pathlib import Path\n"
            "from nudge.rulebook.snapshot import read_plan_snapshot, read_snapshot\n"
            "for read in (read_snapshot, read_plan_snapshot):\n"
            "    found, why_not = read(Path(sys.argv[1]))\n"
            "    if found is None:\n"
            "        sys.exit(f'{read.__name__}: {why_not or \"no snapshot in the rules layer\"}')\n"
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter and path
            [sys.executable, "-S", "-c", check, str(rules)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            print(f"the functions would not read the rules snapshot:\n{result.stderr}", file=sys.stderr)
            print(
                "a snapshot is read only with the rule files, code and pydantic that wrote it; when the"
                " layer's pydantic differs from .venv's, pin one version in pyproject.toml and"
                " layers/nudge/requirements.txt",
                file=sys.stderr,
            )
            return 1
        print("the rules layer's snapshot reads under the layer's packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build")))
