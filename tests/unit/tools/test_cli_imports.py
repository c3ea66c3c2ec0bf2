"""`nudge --help` (and every command that needs no local stack) loads no moto: the CLI runs where the
app is deployed from, and moto is the local stack's (tools/local/commands.py defers it)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_no_moto() -> None:
    code = "import sys, nudge.tools.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'moto'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
