"""Identifier normalization in Python, for the decision API's in-memory lookups.

The decision API answers without a query, so it cannot run the identity stage's SQL
normalizers (`jingzhun.identity.identifiers`) on what a caller sends. This is the same
normalization written in Python — phones to E.164 (+86 default), e-mails lower-cased,
hex digests lower-cased, opaque ids trimmed, PII salted under `pii.mode: salted_hash` —
and tests/activation/test_decisions.py checks it against `normalize_identifier` on a
table of spellings, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from jingzhun.core.workspace import Workspace
from jingzhun.identity import load_identity_config
from jingzhun.identity.graph import normalize_settings
from jingzhun.identity.identifiers import CN_MOBILE, EMAIL, HEX64, MASKED, NormalizeSettings
from jingzhun.identity.registry import Registry

# identifiers.SEPARATORS is `[\s\-().（）]` for RE2, whose \s is ASCII whitespace only.
_SEPARATORS = re.compile(r"[\t\n\v\f\r \-().（）]")
_LANDLINE = re.compile(r"^((\+86|0086)0?|0)(10|[2-9][0-9])[0-9]{7,9}$")
_INTL_PLUS = re.compile(r"^\+[1-9][0-9]{6,14}$")
_INTL_ZEROS = re.compile(r"^00[1-9][0-9]{6,14}$")
_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}
PERSON_ID_TYPE = "person_id"


@dataclass(frozen=True)
class IdNormalizer:
    """The workspace's id types and PII policy, applied to one raw value at a time."""

    registry: Registry
    settings: NormalizeSettings

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> IdNormalizer:
        return cls(load_identity_config(workspace).registry(), normalize_settings(workspace))

    def id_type(self, name: str) -> str | None:
        """The canonical type of `name` (aliases resolved); None when unknown."""
        kind = self.registry.aliases.get(name, name)
        return kind if self.registry.get(kind) is not None else None

    def linkable_types(self) -> list[str]:
        """Linkable types, strongest first: the order a bare value is tried in."""
        kinds = sorted(self.registry.linkable, key=lambda kind: -kind.priority)
        return [kind.name for kind in kinds]

    def stored(self, id_type: str, raw: str) -> tuple[str, str] | None:
        """(type, value as `identities` stores it), or None when `raw` is not a valid `id_type`."""
        kind = self.registry.get(id_type)
        if kind is None:
            return None
        if id_type in ("phone", "phone_masked") and _MASKED.match(_compact(raw)):
            return None  # a masked phone is evidence only: it never resolves a person
        plain = self._plain(kind.normalizer, raw)
        if plain is None:
            return None
        if kind.pii and self.settings.salted and not _HEX64.match(plain):
            salt = bytes.fromhex(self.settings.salt_hex or "")
            plain = hashlib.sha256(salt + plain.encode("utf-8")).hexdigest()
        return id_type, plain

    def _plain(self, normalizer: str, raw: str) -> str | None:
        if normalizer == "phone":
            return phone(raw, self.settings)
        if normalizer == "email":
            value = raw.strip(" ").lower()
            if self.settings.salted and _HEX64.match(value):
                return value
            return value if _EMAIL.match(value) else None
        if normalizer in _HEX:
            value = raw.strip(" ").lower()
            return value if _HEX[normalizer].match(value) else None
        if normalizer == "masked_phone":
            return None
        return raw.strip(" ") or None


_MASKED = re.compile(MASKED)
_HEX64 = re.compile(HEX64)
_EMAIL = re.compile(EMAIL)
_CN_MOBILE = re.compile(CN_MOBILE)


def _compact(raw: str) -> str:
    return _SEPARATORS.sub("", raw.strip(" "))


def phone(raw: str, settings: NormalizeSettings) -> str | None:
    """E.164 for a full phone, None otherwise (identifiers.phone_sql, case for case).

    Example:
        >>> phone("138 0013 8000", NormalizeSettings()), phone("+86-10-8888 6666", NormalizeSettings())
        ('+8613800138000', '+861088886666')
    """
    c, cc = _compact(raw), settings.country_code
    if settings.salted and _HEX64.match(raw.strip(" ").lower()):
        return raw.strip(" ").lower()
    if cc == "86":
        if _CN_MOBILE.match(c):
            return "+86" + c[-11:]
        if _LANDLINE.match(c):
            return "+86" + re.sub(r"^(\+86|0086)?0?", "", c, count=1)
    elif re.match(rf"^(\+{cc}|00{cc}|0)[1-9][0-9]{{5,13}}$", c):
        return f"+{cc}" + re.sub(rf"^(\+{cc}|00{cc})?0?", "", c, count=1)
    if _INTL_PLUS.match(c) and not c.startswith(f"+{cc}"):
        return c
    if _INTL_ZEROS.match(c) and not c.startswith(f"00{cc}"):
        return "+" + c[2:]
    return None
