"""diagnose and explain must start fast: no torch, matplotlib or Optuna unless --plot asks."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "matplotlib", "optuna", "sklearn", "scipy")

PROBE = """
import sys, runpy
sys.argv = ["advisor", *{args!r}]
try:
    runpy.run_module("advisor", run_name="__main__")
except SystemExit:
    pass
import json
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})), file=sys.stderr)
"""


def _heavy_modules(*args: str) -> list[str]:
    code = PROBE.format(args=list(args), heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def test_diagnose_imports_no_heavy_module(tmp_path) -> None:
    log = tmp_path / "run.csv"
    log.write_text("epoch,loss,val_loss\n" + "".join(f"{i},{2 / (i + 1)},{2.2 / (i + 1)}\n" for i in range(20)))
    assert _heavy_modules("diagnose", str(log)) == []
    assert _heavy_modules("diagnose", str(log), "--json", "--report", str(tmp_path / "r.md")) == []


def test_check_imports_no_heavy_module(tmp_path) -> None:
    space = ROOT / "fixtures" / "spaces" / "bad-grid-explosion.yaml"
    assert _heavy_modules("check", str(space), "--budget", "50h", "--trial-time", "30m") == []


def test_explain_and_rules_import_no_heavy_module() -> None:
    assert _heavy_modules("explain", "D301") == []
    assert _heavy_modules("rules") == []


def test_plot_does_import_matplotlib(tmp_path) -> None:
    log = tmp_path / "run.csv"
    log.write_text("epoch,loss,val_loss\n" + "".join(f"{i},{2 / (i + 1)},{2.2 / (i + 1)}\n" for i in range(20)))
    assert "matplotlib" in _heavy_modules("diagnose", str(log), "--plot", str(tmp_path / "p.png"))
