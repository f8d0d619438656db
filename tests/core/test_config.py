from pathlib import Path

import pytest

from jingzhun.core.config import WorkspaceConfig, dump_config, load_config, parse_config
from jingzhun.core.errors import ConfigError

WHERE = Path("jingzhun.yaml")

BAD_CONFIGS = [
    # (case, data, field named, words the fix must contain)
    ("typo in a key", {"name": "x", "timzone": "UTC"}, "timzone", "timezone"),
    ("unknown time zone", {"name": "x", "timezone": "Asia/Shangai"}, "timezone", "Asia/Shanghai"),
    ("lower-case currency", {"name": "x", "currency": "rmb"}, "currency", "CNY"),
    ("unknown engine", {"name": "x", "engine": {"kind": "postgres"}}, "engine.kind", "duckdb"),
    ("nested typo", {"name": "x", "engine": {"duckdb": {"pathh": "a"}}}, "engine.duckdb.pathh", "path"),
    ("missing name", {"timezone": "UTC"}, "name", "name:"),
    ("bad PII mode", {"name": "x", "pii": {"mode": "encrypted"}}, "pii.mode", "salted_hash"),
    ("bad language", {"name": "x", "language": "fr"}, "language", "zh"),
]


@pytest.mark.parametrize(("case", "data", "field", "fix_words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key_and_the_fix(case: str, data: dict, field: str, fix_words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data, WHERE)
    problem = raised.value
    assert problem.field == field
    assert fix_words in problem.fix
    assert f"`{field}`" in problem.describe("en")
    assert "修复" in problem.describe("zh")
    assert problem.location == "jingzhun.yaml"


def test_defaults_are_a_chinese_retailer() -> None:
    config = parse_config({"name": "品牌"}, WHERE)
    assert (config.timezone, config.currency, config.language) == ("Asia/Shanghai", "CNY", "zh")
    assert config.engine.kind == "duckdb" and config.pii.mode == "plain"


def test_written_config_reads_back_identically(tmp_path: Path) -> None:
    config = WorkspaceConfig(name="精准测试", timezone="Asia/Hong_Kong", currency="HKD")
    path = tmp_path / "jingzhun.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config
    assert "精准测试" in path.read_text(encoding="utf-8")  # Chinese stays readable, not escaped


def test_broken_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "jingzhun.yaml"
    path.write_text("name: x\nengine:\n  kind: duckdb\n bad: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)


def test_non_mapping_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jingzhun.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
