"""Cold start from the built layer, with and without compiled modules (.pyc): what Lambda runs.

    make sam-build && .venv/bin/python -m bench.layer_pyc [--runs N]

bench/coldstart.py imports each function from .venv, where every module has its .pyc. In Lambda
the modules come from the NudgeLayer at /opt/python, which is read-only: a module shipped without
a .pyc is compiled from source at every cold start. This imports each function's app.py (and the
baseline) with the built layer first on the path and writing no .pyc (PYTHONDONTWRITEBYTECODE, as
on a read-only /opt), from two copies of the layer: as built (layers/nudge/Makefile compiles it,
unchecked-hash .pyc) and the same files without any .pyc (how the layer was built before). The
runtime's own boto3 stands in from .venv, compiled, as in Lambda. CPU milliseconds, median of the
runs, the two copies alternating.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.coldstart import BASELINE, BUILD, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layer_pyc", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    layer = BUILD / "NudgeLayer" / "python"
    if not layer.is_dir():
        raise SystemExit(f"{layer}: missing; run `make sam-build` first")
    with tempfile.TemporaryDirectory() as tmp:
        source_only = Path(tmp) / "python"
        shutil.copytree(layer, source_only, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        copies = {"with .pyc": layer, "source only": source_only}
        cpu: dict[tuple[str, str], list[float]] = {}
        with targets() as every:
            for _ in range(args.runs):
                for label, path in copies.items():
                    for target in every:
                        env = {**target.env, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"}
                        run = type(target)(target.name, target.task_root, env)
                        _elapsed, process, _count = run.run().stdout.split()[-3:]
                        cpu.setdefault((target.name, label), []).append(float(process) * 1000)
    names = list(dict.fromkeys(name for name, _ in cpu))
    print(f"CPU ms of import+init, median of {args.runs}, from {layer} (no .pyc written)")
    print(f"{'function':<24} {'source only':>12} {'with .pyc':>10} {'saved':>7}")
    for name in names:
        before = statistics.median(cpu[(name, "source only")])
        after = statistics.median(cpu[(name, "with .pyc")])
        label = "baseline" if name == BASELINE else name
        print(f"{label:<24} {before:>12.0f} {after:>10.0f} {before - after:>7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
