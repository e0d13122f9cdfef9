"""The README's first lines are the set-up: one command runs an example, one runs the tests (CI's)."""

from __future__ import annotations

from conftest import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    example, tests = _readme_commands()[:2]
    assert "advisor diagnose" in example and (ROOT / example.split()[-1]).is_file()
    assert tests in (ROOT / ".ci" / "run").read_text()
