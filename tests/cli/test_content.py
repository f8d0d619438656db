"""`jingzhun template …` and `jingzhun coupon …` as a user runs them (a subprocess), on a copy of
the portrayed demo."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from jingzhun.activation import install_starter_templates
from tests.cli.test_foundation import run
from tests.conftest import copy_workspace


@pytest.fixture
def demo(portrayed_demo: Path, tmp_path: Path) -> Path:
    root = copy_workspace(portrayed_demo, tmp_path / "ws").root
    install_starter_templates(root, brand_zh="精准", brand_en="Jingzhun", site_url="https://www.jingzhun-demo.cn")
    return root


def test_list_preview_issue_and_redemptions(demo: Path) -> None:
    listed = run("template", "list", "-w", str(demo), "-f", "json")
    assert listed.returncode == 0, listed.stderr
    kinds = {row["id"]: row["kind"] for row in json.loads(listed.stdout)}
    assert kinds["flash_sale"] == "flash_sale" and len(kinds) >= 7

    with duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True) as db:
        first, second = (row[0] for row in db.sql("SELECT person_id FROM person_traits ORDER BY 1 LIMIT 2").fetchall())
    preview = run("template", "preview", "exclusive_benefit", "--person", first, "--channel", "sms", "--sql",
                  "-w", str(demo))
    assert preview.returncode == 0, preview.stderr
    assert "【精准】" in preview.stdout and "回T退订" in preview.stdout and "billed as" in preview.stdout
    assert "预览券码：尚未发放" in preview.stdout  # the workspace's language (zh) is the message's
    assert "LEFT JOIN person_traits AS pt" in preview.stdout  # --sql: the context query

    issued = run("coupon", "issue", "autumn", "--person", first, "--person", second, "--value", "30",
                 "--min-spend", "199", "--days", "3", "-w", str(demo), "-f", "json")
    assert issued.returncode == 0, issued.stderr
    codes = json.loads(issued.stdout)
    assert len({row["code"] for row in codes}) == 2 and codes[0]["name_en"] == "¥30 off orders over ¥199"

    report = run("coupon", "redemptions", "--campaign", "autumn", "-w", str(demo), "-f", "json")
    assert report.returncode == 0, report.stderr
    [summary] = json.loads(report.stdout)
    assert (summary["issued"], summary["redeemed"]) == (2, 0)
