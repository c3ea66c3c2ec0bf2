"""Where each function's cold start goes: `python -X importtime` of every function's app.py and of
the minimal handler (bench/coldstart.py's targets, same environment), summed by package.

    .venv/bin/python -m bench.importtime [--runs N] [--out bench/results/coldstart-importtime.md]

Each module's own ("self") import time is the least of `--runs` fresh processes, so one slow run on
a busy machine does not inflate it; the modules' self times add up to the time spent importing.
"init" is the module's own work at import that is not an import (settings, rule files, clients,
SSM reads): import+init less the imports, the least of the runs. Packages are the top-level name
(the standard library as one row); `nudge` by subpackage.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.coldstart import BASELINE, targets

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
STDLIB = "(standard library)"
INIT = "(init: work at import that is not an import)"


@dataclass(frozen=True)
class Profile:
    name: str
    self_us: dict[str, int]  # module -> least self time over the runs, microseconds
    init_us: int  # the least, over the runs, of import+init less that run's imports
    modules: int

    def by_package(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for module, us in self.self_us.items():
            out[package(module)] += us
        out[INIT] = self.init_us
        return out


def package(module: str) -> str:
    top = module.split(".")[0]
    if top == "nudge":
        return ".".join(module.split(".")[:2])
    if top in sys.stdlib_module_names or top.startswith("_"):
        return STDLIB
    return top


def profile(runs: int = 5) -> list[Profile]:
    with targets() as every:
        self_us: dict[str, dict[str, int]] = {t.name: {} for t in every}
        init_us: dict[str, list[int]] = {t.name: [] for t in every}
        modules: dict[str, int] = {}
        for _ in range(runs):
            for target in every:
                done = target.run("-X", "importtime")
                seconds, _cpu, count = done.stdout.split()[-3:]
                modules[target.name] = int(count)
                mine = self_us[target.name]
                imports = 0
                for match in LINE.finditer(done.stderr):
                    module, us = match.group(4), int(match.group(1))
                    mine[module] = min(us, mine.get(module, us))
                    imports += us
                init_us[target.name].append(max(0, round(float(seconds) * 1_000_000) - imports))
    return [Profile(t.name, self_us[t.name], min(init_us[t.name]), modules[t.name]) for t in every]


def report(profiles: list[Profile], runs: int, top: int = 12) -> str:
    baseline = next(p for p in profiles if p.name == BASELINE)
    functions = [p for p in profiles if p is not baseline]
    packages = {p.name: p.by_package() for p in profiles}
    names = sorted(
        {name for counts in packages.values() for name in counts},
        key=lambda name: -max(counts[name] for counts in packages.values()),
    )
    header = ["package", "baseline", *(p.name.removesuffix("Function") for p in functions)]
    lines = [
        "# Cold start: import time by package",
        "",
        f"`.venv/bin/python -m bench.importtime --runs {runs}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        "Milliseconds: each module's least self time over the runs, summed by package; the init row "
        "is import+init less that run's imports, the least of the runs. Rows under 2 ms in every "
        "column are left out.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]
    for name in names:
        cells = [packages[p.name][name] / 1000 for p in profiles]
        if max(cells) < 2:
            continue
        lines.append(f"| {name} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
    sums = (f"**{sum(packages[p.name].values()) / 1000:.0f}**" for p in profiles)
    lines.append("| **sum of the rows** | " + " | ".join(sums) + " |")
    lines.append("| modules loaded | " + " | ".join(str(p.modules) for p in profiles) + " |")
    lines += ["", f"## The {top} heaviest modules each function loads beyond the baseline (self ms)", ""]
    for p in functions:
        extra = sorted(
            ((us, module) for module, us in p.self_us.items() if module not in baseline.self_us), reverse=True
        )[:top]
        lines.append(f"- **{p.name}**: " + ", ".join(f"`{module}` {us / 1000:.1f}" for us, module in extra))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.importtime", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per function (least self time)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here as well")
    args = parser.parse_args(argv)
    text = report(profile(args.runs), args.runs)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
