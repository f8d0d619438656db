"""definitions/identity.yaml: defaults, changes to the registry, errors that name the key."""

from __future__ import annotations

import pytest

from jingzhun.core.errors import ConfigError
from jingzhun.identity.config import load_identity_config


def _write(workspace, text: str) -> None:
    (workspace.definitions_dir / "identity.yaml").write_text(text, encoding="utf-8")


def test_defaults_without_a_file(workspace) -> None:
    config = load_identity_config(workspace)
    registry = config.registry()
    assert registry.get("member_id").max_per_person == 2
    for kind in ("wechat_unionid", "tmall_open_uid", "jd_pin", "douyin_user_id"):
        assert registry.get(kind).max_per_person == 1
    assert registry.get("phone_masked").links is False
    assert "13800138000" in {value for _, value in config.blocklist.typed_values()}
    assert {"null", "unknown", "none", "0", "test", "-"} <= set(config.blocklist.tokens())


def test_changes_and_new_types(workspace) -> None:
    _write(workspace, """
id_types:
  member_id: {max_per_person: 1}
  wechat_unionid: {unlimited: true}
  loyalty_card: {strength: strong, priority: 75, max_per_person: 1}
blocklist:
  include_defaults: false
  values: [匿名]
  by_type: {phone: ["02112345678"]}
sources:
  demo-web: {user_id_type: user_id}
""")
    config = load_identity_config(workspace)
    registry = config.registry()
    assert registry.get("member_id").max_per_person == 1
    assert registry.get("wechat_unionid").max_per_person is None
    assert registry.get("loyalty_card").priority == 75
    assert config.blocklist.tokens() == ["匿名"]
    assert config.blocklist.typed_values() == [("phone", "02112345678")]
    assert config.sources["demo-web"].user_id_type == "user_id"


@pytest.mark.parametrize(("text", "field"), [
    ("sources:\n  web: {user_id_type: member_idd}\n", "sources.web.user_id_type"),
    ("shared_value_threshold: 0\n", "shared_value_threshold"),
    ("blocklst: {}\n", "blocklst"),
    ("id_types:\n  phone: {priority: -1}\n", "id_types.phone.priority"),
])
def test_errors_name_the_key(workspace, text: str, field: str) -> None:
    _write(workspace, text)
    with pytest.raises(ConfigError) as raised:
        load_identity_config(workspace)
    assert field in raised.value.message
    assert raised.value.fix and raised.value.message_zh != raised.value.message


def test_the_matching_section_belongs_to_the_matcher(workspace) -> None:
    _write(workspace, "matching:\n  auto_merge_threshold: 0.99\nshared_value_threshold: 4\n")
    assert load_identity_config(workspace).shared_value_threshold == 4
