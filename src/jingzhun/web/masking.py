"""Masking of personal identifiers for roles that must not see them (viewer, analyst).

Applied to every JSON answer and export of the API for those roles, after the answer
is built, so no route can forget it. Three nets, from sure to broad:

- key-value rows whose kind says it is personal (`id_type`/`id_value` of the identity
  graph, `trait`/`value` of the portrait): the value is masked whatever it looks like;
- columns that hold a person's name, phone, e-mail or birth date (`name` only in a row
  that is about a person, i.e. has a `person_id`: elsewhere `name` names a tag or a
  source);
- any phone number or e-mail address inside any text (timelines, payloads, copy).
"""

from __future__ import annotations

import re
from typing import Any

PII_TYPES = frozenset({"phone", "email", "name", "birth_date", "mobile", "id_card"})
PII_COLUMNS = frozenset({"phone", "email", "mobile", "receiver_name", "receiver_phone", "person_name",
                         "customer_name", "contact_name", "full_name", "real_name", "birth_date"})
PERSON_NAME = "name"
_PHONE = re.compile(r"(?<![\dA-Za-z])(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
ROLES_THAT_SEE_PII = frozenset({"admin", "marketer"})


def sees_pii(role: str | None) -> bool:
    return role in ROLES_THAT_SEE_PII


def mask_text(text: str) -> str:
    """Phones and e-mail addresses inside `text` masked; the rest kept.

    Example:
        >>> mask_text("call +8613812345678 or mail wang.fang@qq.com")
        'call 138****5678 or mail w***@qq.com'
    """
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def mask_value(value: Any) -> Any:
    """A personal value made unrecognisable but still telling (王芳 → 王*, phones keep 3+4 digits).

    Example:
        >>> mask_value("欧阳娜娜"), mask_value("+8618712348991"), mask_value("1990-05-01")
        ('欧***', '187****8991', '****')
    """
    if value is None or isinstance(value, bool):
        return value
    text = str(value)
    if "****" in text or set(text) <= {"*"}:  # masked already (an export masks phones itself)
        return text
    masked = mask_text(text)
    if masked != text:
        return masked
    if "-" in text and any(ch.isdigit() for ch in text):  # dates and other numbers: nothing to keep
        return "****"
    return text[:1] + "*" * max(len(text) - 1, 1) if text else text


def mask_pii(data: Any) -> Any:
    """`data` (JSON-ready: dicts, lists, scalars) with every personal identifier masked."""
    if isinstance(data, dict):
        return _mask_row(data)
    if isinstance(data, list):
        return [mask_pii(item) for item in data]
    if isinstance(data, str):
        return mask_text(data)
    return data


def _mask_row(row: dict[str, Any]) -> dict[str, Any]:
    personal_value = _personal_kind(row)
    about_person = "person_id" in row
    masked: dict[str, Any] = {}
    for key, value in row.items():
        lowered = str(key).lower()
        named = lowered in PII_COLUMNS or (lowered == PERSON_NAME and about_person)
        if named or (personal_value and lowered in ("id_value", "value", "raw_value")):
            masked[key] = mask_value(value)
        else:
            masked[key] = mask_pii(value)
    return masked


def _personal_kind(row: dict[str, Any]) -> bool:
    """A key-value row whose kind is personal: an identity of type phone, a trait `name` …"""
    kind = row.get("id_type", row.get("trait", row.get("identifier_type")))
    return isinstance(kind, str) and kind.lower() in PII_TYPES


def mask_frame_columns(columns: list[str]) -> list[str]:
    """Which columns of a table about persons an export must mask."""
    return [c for c in columns if c.lower() in PII_COLUMNS or c.lower() == PERSON_NAME]
