import pytest

from jingzhun.collect.importers import builtin_kinds, builtin_mapping, load_mapping
from jingzhun.collect.importers.mapping import parse_mapping
from jingzhun.core.errors import ConfigError


def test_every_builtin_mapping_is_valid() -> None:
    assert {"pos_sales", "crm_members", "online_orders", "products", "stores"} <= set(builtin_kinds())
    for kind in builtin_kinds():
        assert builtin_mapping(kind).kind == kind


def test_typo_in_a_field_names_the_key_and_suggests_the_fix() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_mapping({"kind": "stores", "fields": {"store_id": {"requred": True}}}, "m.yaml")
    assert raised.value.field == "fields.store_id.requred"
    assert "required" in raised.value.fix


def test_natural_key_must_be_a_field() -> None:
    with pytest.raises(ConfigError, match="natural_key|key"):
        parse_mapping({"kind": "stores", "natural_key": ["shop"], "fields": {"store_id": {}}}, "m.yaml")


def test_unknown_kind_lists_the_builtin_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        builtin_mapping("pos_sale")
    assert "pos_sales" in raised.value.fix


def test_mapping_file_is_read_from_yaml(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: stores\nfields:\n  store_id: {source: 门店编号, required: true}\n", encoding="utf-8")
    assert load_mapping(path).source_of("store_id") == "门店编号"
    path.write_text("kind: stores\nfields: [\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_mapping(path)


def test_time_zone_and_formats_are_checked() -> None:
    with pytest.raises(ConfigError, match="Asia/Shanghai"):
        parse_mapping({"kind": "stores", "timezone": "Asia/Shangai", "fields": {"store_id": {}}}, "m.yaml")
    with pytest.raises(ConfigError, match="strptime"):
        parse_mapping({"kind": "stores", "fields": {"opened_on": {"type": "date", "formats": ["x'); --"]}}}, "m.yaml")


def test_plausible_window_applies_to_times_only_and_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="dates and timestamps only"):
        parse_mapping({"kind": "stores", "fields": {"store_id": {"not_before": "2000-01-01"}}}, "m.yaml")
    with pytest.raises(ConfigError, match="not be later"):
        parse_mapping({"kind": "stores", "fields": {"opened_on": {"type": "date", "not_before": "2020-01-01",
                                                                  "not_after": "2019-01-01"}}}, "m.yaml")
