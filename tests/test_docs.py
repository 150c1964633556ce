"""docs/checks.md is generated from the registered checks' metadata and must match it."""

from __future__ import annotations

from click.testing import CliRunner

from auditor.cli import cli
from reports.render import md_url

from .conftest import REPO


def test_docs_checks_md_is_in_sync_with_the_catalog() -> None:
    out = CliRunner().invoke(cli, ["checks", "list", "--format", "md"])
    assert out.exit_code == 0, out.output
    assert (REPO / "docs" / "checks.md").read_text(encoding="utf-8") == out.output, (
        "docs/checks.md is stale: run `mailflow-audit checks list --format md > docs/checks.md`")


def test_every_check_appears_in_the_catalog_with_its_metadata() -> None:
    import json

    listed = json.loads(CliRunner().invoke(cli, ["checks", "list", "--format", "json"]).output)
    text = (REPO / "docs" / "checks.md").read_text(encoding="utf-8")
    for item in listed["checks"]:
        assert f"## {item['id']}\n" in text
        for ref in item["references"]:
            assert f"]({md_url(ref['url'])})" in text
