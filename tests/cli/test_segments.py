"""`jingzhun segment …` as a user runs it (a subprocess), on a copy of the portrayed demo."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.cli.test_foundation import run
from tests.conftest import copy_workspace


@pytest.fixture
def demo(portrayed_demo: Path, tmp_path: Path) -> Path:
    return copy_workspace(portrayed_demo, tmp_path / "ws").root


def test_list_preview_export_overlap(demo: Path, tmp_path: Path) -> None:
    listed = run("segment", "list", "-w", str(demo), "-f", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["segment_id"]: row for row in json.loads(listed.stdout)}
    assert rows["holiday_women_fashion_beauty"]["members"] > 0

    preview = run("segment", "preview", "holiday_women_fashion_beauty", "-w", str(demo), "--sql")
    assert preview.returncode == 0, preview.stderr
    assert f"{rows['holiday_women_fashion_beauty']['members']:,} persons match" in preview.stdout
    assert "FROM person_traits" in preview.stdout  # the definition, evaluated now

    path = tmp_path / "members.csv"
    exported = run("segment", "export", "holiday_women_fashion_beauty", str(path), "-w", str(demo))
    assert exported.returncode == 0, exported.stderr
    assert len(pd.read_csv(path, encoding="utf-8-sig")) == rows["holiday_women_fashion_beauty"]["members"]

    overlap = run("segment", "overlap", "holiday_women_fashion_beauty", "holiday_women_on_wechat",
                  "-w", str(demo), "-f", "json")
    assert overlap.returncode == 0 and '"holiday_women_on_wechat"' in overlap.stdout


def test_create_snapshots_and_bad_rules_name_the_field(demo: Path, tmp_path: Path) -> None:
    definition = tmp_path / "gold.yaml"
    definition.write_text("segment_id: gold_women\nname_zh: 金卡女性\nname_en: Gold women\n"
                          "rule:\n  all:\n    - {trait: gender, op: '=', value: F}\n"
                          "    - {trait: member_level, op: in, value: [金卡, 钻石]}\n", encoding="utf-8")
    created = run("segment", "create", str(definition), "-w", str(demo))
    assert created.returncode == 0, created.stderr
    assert "gold_women" in created.stdout and "members" in created.stdout
    assert (demo / "definitions" / "segments" / "gold_women.yaml").exists()

    wrong = run("segment", "preview", "-w", str(demo), "--rule", '{"trait": "gendr", "op": "=", "value": "F"}')
    assert wrong.returncode != 0
    assert "segment.rule.trait" in wrong.stderr + wrong.stdout and "gendr" in wrong.stderr + wrong.stdout


def test_cluster_and_lookalike_print_their_results(demo: Path, tmp_path: Path) -> None:
    clustered = run("segment", "cluster", "-w", str(demo), "-k", "3", "-o", str(tmp_path / "clusters.csv"))
    assert clustered.returncode == 0, clustered.stderr
    assert "k = 3" in clustered.stdout
    assert pd.read_csv(tmp_path / "clusters.csv")["cluster"].nunique() == 3
    similar = run("segment", "lookalike", "holiday_women_fashion_beauty", "-w", str(demo), "--top-n", "5")
    assert similar.returncode == 0, similar.stderr
    assert "holdout_auc" in similar.stdout
    insight = run("segment", "insight", '{"order": {"product": {"category": "home"}}}', "--window", "180",
                  "--top", "3", "-w", str(demo), "-f", "json")
    assert insight.returncode == 0, insight.stderr
    assert '"lift":' in insight.stdout and "convert at" in insight.stdout  # the table and its readings
