"""Cold start: how long each function's module takes to import and initialise, in a fresh process,
against a minimal Powertools handler measured the same way; and each function's package size.

Each measurement is one new interpreter that records `time.perf_counter()` just before it
executes `functions/<name>/app.py` and just after, with the environment template.yaml gives the
function (Globals and its own variables; references resolved to local stand-ins). The handlers
call their wiring at import: settings, rule files, boto3 clients and, for email and notify, an SSM
parameter. AWS is a moto server in the parent process (`nudge.tools.local.aws.LockedMotoServer`),
reached through AWS_ENDPOINT_URL, so nothing AWS-related is imported before the clock starts.

LAMBDA_TASK_ROOT is set as Lambda sets it, so Powertools' Tracer is on (it patches botocore for
X-Ray at import), as it is in the deployed functions (`Tracing: Active`).

Package size: the unzipped bytes of each function's directory under .aws-sam/build plus those of
the layers it lists (NudgeLayer, RulesLayer), against Lambda's 250 MB limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.tools.local.template import load_template

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
LAMBDA_LIMIT_BYTES = 250 * 1024 * 1024
MB = 1024 * 1024
ACCOUNT = "123456789012"
REGION = "us-east-1"
BASELINE = "baseline"

# The minimal Powertools handler: Logger, Metrics and one boto3 client created at import.
BASELINE_SOURCE = '''\
"""A minimal Powertools handler: the cold-start baseline."""

import boto3
from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics(namespace="Baseline")
dynamodb = boto3.client("dynamodb")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    return {"ok": True}
'''

# Runs in the fresh interpreter: nothing but importlib before the clock starts.
CHILD = """\
import importlib.util, sys, time
path, task_root = sys.argv[1], sys.argv[2]
sys.path.insert(0, task_root)
started, started_cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("app", path)
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
print(repr(elapsed), repr(cpu), len(sys.modules))
if len(sys.argv) > 3:  # the names of the modules loaded, for tests/integration/test_cold_start_imports.py
    with open(sys.argv[3], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
    import gc, json  # and whether it resumed garbage collection, having frozen what it built,
    def models(cls):  # and which of Nudge's pydantic models it built (the others are deferred)
        for sub in cls.__subclasses__():
            yield sub
            yield from models(sub)
    pydantic = sys.modules.get("pydantic")
    built = sorted(
        {f"{m.__module__}.{m.__qualname__}" for m in models(pydantic.BaseModel) if m.__pydantic_complete__}
        if pydantic else ()
    )
    with open(sys.argv[3] + ".state", "w") as out:
        json.dump({"gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "built": built}, out)
"""


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str  # functions/<name>
    env: dict[str, str]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Timing:
    name: str
    runs: tuple[float, ...]  # seconds, one per fresh process
    cpu: tuple[float, ...]  # the same processes' CPU seconds (time.process_time) over the same span
    modules: int  # sys.modules after the import

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs) * 1000

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1000


@dataclass(frozen=True)
class Size:
    logical_id: str
    function_bytes: int
    layer_bytes: dict[str, int]

    @property
    def total(self) -> int:
        return self.function_bytes + sum(self.layer_bytes.values())


def functions(endpoint: str) -> list[Function]:
    """Every AWS::Serverless::Function in template.yaml, its environment resolved to local values."""
    template = load_template(ROOT / "template.yaml")
    parameters = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    resources = template["Resources"]
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    out = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        variables = {**globals_env, **props.get("Environment", {}).get("Variables", {})}
        env = {k: _resolve(v, parameters, resources, endpoint) for k, v in variables.items()}
        env["NUDGE_RULES_DIR"] = str(ROOT / "rules")  # RulesLayer's /opt/rules (targets: as built)
        layers = tuple(layer["Ref"] for layer in props.get("Layers", []) if isinstance(layer, dict))
        out.append(Function(logical_id, Path(props["CodeUri"]).name, env, layers))
    return out


def _resolve(value: Any, parameters: dict[str, str], resources: dict[str, Any], endpoint: str) -> str:
    if isinstance(value, str | int | float):
        return str(value)
    value = {key.removeprefix("Fn::"): inner for key, inner in value.items()}
    if "Ref" in value:
        return _ref(value["Ref"], parameters, resources, endpoint)
    if "Sub" in value:
        text = value["Sub"] if isinstance(value["Sub"], str) else value["Sub"][0]

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in parameters:
                return parameters[name]
            if name.endswith(".ApiEndpoint"):
                return "https://api.nudge.example"
            if name.startswith("AWS::"):
                return {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT}.get(name, "aws")
            return _ref(name.split(".")[0], parameters, resources, endpoint)

        return re.sub(r"\$\{([^}]+)\}", sub, text)
    if "GetAtt" in value:
        target = value["GetAtt"]
        logical_id = target.split(".")[0] if isinstance(target, str) else target[0]
        return f"arn:aws:local:{REGION}:{ACCOUNT}:{logical_id}"
    raise ValueError(f"cannot resolve {value!r}")


def _ref(name: str, parameters: dict[str, str], resources: dict[str, Any], endpoint: str) -> str:
    if name in parameters:
        return parameters[name]
    kind = resources.get(name, {}).get("Type", "")
    if kind == "AWS::SQS::Queue":
        return f"{endpoint}/{ACCOUNT}/bench-{name}"
    if kind == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:bench-{name}"
    return f"bench-{name}"


def _base_env(endpoint: str) -> dict[str, str]:
    """What every child gets: the parent's PATH and venv, moto's credentials, Lambda's markers."""
    # PYTHONPATH: a before/after comparison runs an older tree's `nudge` first on the path.
    keep = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "TMPDIR", "PYTHONPATH")
    }
    return {
        **keep,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }


def _bench_key_record() -> str:
    from datetime import UTC, datetime

    from nudge.domain.keys import KeyKind, new_record

    return new_record(
        "bench-server", KeyKind.SERVER, "bench-write-key", created_at=datetime.now(UTC)
    ).to_json()


@dataclass(frozen=True)
class Target:
    """One module to import in a fresh process: the baseline or a function's app.py."""

    name: str
    task_root: Path
    env: dict[str, str]  # the child's whole environment

    def run(self, *python_flags: str, modules_to: Path | None = None) -> subprocess.CompletedProcess[str]:
        args = [str(self.task_root / "app.py"), str(self.task_root)]
        if modules_to:
            args.append(str(modules_to))
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, *python_flags, "-c", CHILD, *args],
            env=self.env,
            cwd=self.task_root,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: import failed\n{done.stderr[-2000:]}")
        return done

    def modules(self) -> set[str]:
        """The names in sys.modules once the module is imported, in a fresh process."""
        return self.loaded().modules

    def loaded(self) -> Loaded:
        """What a fresh process holds once the module is imported: its modules, the state of garbage
        collection (the functions pause it while they load, then freeze what they built) and the
        pydantic models built."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "modules.txt"
            self.run(modules_to=out)
            state = json.loads(Path(f"{out}.state").read_text())
            modules = set(out.read_text().split("\n"))
            return Loaded(modules, state["gc_enabled"], state["frozen"], frozenset(state["built"]))


@dataclass(frozen=True)
class Loaded:
    modules: set[str]
    gc_enabled: bool
    frozen: int  # objects in the permanent generation (gc.freeze)
    built: frozenset[str]  # the pydantic models whose validators are built (module.Class)


def _built_rules(into: Path, env: dict[str, str]) -> Path:
    """rules/ as the rules layer's build leaves it (/opt/rules): the files, and the checked rule set
    beside them (`nudge rules snapshot`, run by rules/Makefile). A tree from before the snapshot
    has no such command: its functions load the files, as they did."""
    shutil.copytree(ROOT / "rules", into, ignore=shutil.ignore_patterns("Makefile"))
    subprocess.run(  # noqa: S603 - our own interpreter and CLI
        [sys.executable, "-m", "nudge.tools.cli", "rules", "snapshot", str(into)],
        env=env,
        capture_output=True,
        check=False,
    )
    return into


@contextmanager
def targets() -> Iterator[list[Target]]:
    """The baseline and every function, with a moto server (and the SSM parameters the functions
    read at cold start) up for as long as the block runs."""
    import boto3

    from nudge.tools.local.aws import LockedMotoServer

    with LockedMotoServer() as server, tempfile.TemporaryDirectory() as tmp:
        endpoint = server.endpoint_url
        env = _base_env(endpoint)
        ssm = boto3.client(
            "ssm",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's stand-in
        )
        for name, value in (
            ("/nudge/dev/keys/bench-server", _bench_key_record()),
            ("/nudge/dev/unsubscribe-secret", "bench-unsubscribe-secret"),
            ("/nudge/dev/suppression-secret", "bench-suppression-secret"),
        ):
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
        baseline_dir = Path(tmp) / BASELINE
        baseline_dir.mkdir()
        (baseline_dir / "app.py").write_text(BASELINE_SOURCE)
        own: list[tuple[str, Path, dict[str, str]]] = [
            (BASELINE, baseline_dir, {"POWERTOOLS_SERVICE_NAME": BASELINE})
        ]
        rules = _built_rules(Path(tmp) / "rules", env)
        own += [
            (f.logical_id, ROOT / "functions" / f.name, {**f.env, "NUDGE_RULES_DIR": str(rules)})
            for f in functions(endpoint)
        ]
        yield [
            Target(
                name,
                task_root,
                {**env, **variables, "LAMBDA_TASK_ROOT": str(task_root), "AWS_LAMBDA_FUNCTION_NAME": name},
            )
            for name, task_root, variables in own
        ]


def measure(repeats: int = 5) -> list[Timing]:
    """Import time of each function and of the baseline: `repeats` fresh processes each, round-robin."""
    with targets() as every:
        runs: dict[str, list[float]] = {t.name: [] for t in every}
        cpu: dict[str, list[float]] = {t.name: [] for t in every}
        modules: dict[str, int] = {}
        for _ in range(repeats):
            for target in every:
                elapsed, process, count = target.run().stdout.split()[-3:]
                runs[target.name].append(float(elapsed))
                cpu[target.name].append(float(process))
                modules[target.name] = int(count)
    return [Timing(t.name, tuple(runs[t.name]), tuple(cpu[t.name]), modules[t.name]) for t in every]


def sizes() -> tuple[list[Size], datetime] | None:
    """Unzipped bytes of each built function and its layers, or None when nothing is built."""
    if not (BUILD / "template.yaml").exists():
        return None
    built = datetime.fromtimestamp((BUILD / "template.yaml").stat().st_mtime, UTC)
    out = []
    for f in functions("http://unused"):
        layer_bytes = {layer: _tree_bytes(BUILD / layer) for layer in f.layers}
        out.append(Size(f.logical_id, _tree_bytes(BUILD / f.logical_id), layer_bytes))
    return out, built


def _tree_bytes(path: Path) -> int:
    """Sum of the files' sizes (as unzipped), symlinks not followed."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make sam-build`")
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def summary(timings: list[Timing]) -> dict[str, Any]:
    """For other sections (cost): the median import ms by function."""
    return {t.name: t.median_ms for t in timings}


def as_json(timings: list[Timing]) -> str:
    return json.dumps(summary(timings))
