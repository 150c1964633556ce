"""The README's two commands are the ones CI runs and the ones that work."""

from __future__ import annotations

from .conftest import REPO


def _readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:12] if line.startswith("    python3 -m venv")]


def test_the_readme_opens_with_the_demo_and_test_commands() -> None:
    demo, tests = _readme_commands()
    assert "mailflow-audit audit --demo" in demo
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _readme_commands()
    assert tests in (REPO / ".ci" / "run").read_text().splitlines()
