"""Identifier normalization as SQL: one definition that DuckDB and Spark both run.

Each function returns a SQL fragment in DuckDB's dialect over column expressions the
caller names (never user text; user values go in through `lit`). The fragments are
embedded in the observation queries, so every raw value is normalized in the engine,
row by row, with no Python loop.

Phones (default country +86):
  strip spaces, dashes, dots and parentheses; `+86`/`86`/`0086` + an 11-digit mobile
  `1[3-9]\\d{9}` becomes `+86` + the mobile; `0` + area code + number becomes a +86
  landline; other `+…` / `00…` numbers are kept as E.164; masked numbers
  (`187****8991`) become id type `phone_masked` — weak evidence that never links.
E-mails: trimmed and lower-cased. Ad-platform hashes (md5/sha256): lower-case hex.

Hashed forms. Ad platforms export audiences as hashes of a phone or e-mail, each in
its own spelling of the plain value (per their upload guides):
  - 11-digit national mobile, no country code — Tencent Ads (广点通 号码包, MD5 or
    SHA-256), Ocean Engine / Douyin (巨量引擎 DMP, MD5), Baidu, Alibaba (达摩盘, MD5);
  - E.164 with '+' (`+8613812345678`) — Google Customer Match (SHA-256);
  - country code and number without '+' (`8613812345678`) — Meta Custom Audiences (SHA-256).
  E-mails are hashed lower-cased and trimmed everywhere. `hash_forms_sql` computes all
  of them from the normalized plain values, so an exported hash matches its plain form.

Salted storage. Under `pii.mode: salted_hash`, phone and e-mail values are stored as
SHA-256(salt bytes + UTF-8 value) in hex — the same digest the importers write
(collect/importers/convert.py `salted_hash`), so a phone hashed on import and one
arriving raw in an identify call meet as the same identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from jingzhun.identity.registry import IdType, Registry

SEPARATORS = r"[\s\-().（）]"
HEX64 = "^[0-9a-f]{64}$"
MASKED = r"^(\+?86)?1[3-9][0-9][*＊]{4}[0-9]{4}$"
CN_MOBILE = r"^(\+86|0086|86)?1[3-9][0-9]{9}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def lit(value: object) -> str:
    """A value as a SQL literal (quoted and escaped by sqlglot, never formatted by hand).

    Example:
        >>> lit("O'Brien")
        "'O''Brien'"
    """
    return exp.convert(value).sql("duckdb")


def in_list(values: list[str] | tuple[str, ...]) -> str:
    """`(v1, v2, …)` for an IN predicate; a list that matches nothing when empty."""
    return "(" + ", ".join(lit(v) for v in values) + ")" if values else "(NULL)"


@dataclass(frozen=True)
class NormalizeSettings:
    """What normalization needs from the workspace: the phone country and the PII salt."""

    country_code: str = "86"
    salt_hex: str | None = None  # set when the workspace stores PII as salted hashes

    @property
    def salted(self) -> bool:
        return self.salt_hex is not None


def compact_phone_sql(raw: str) -> str:
    """The phone as typed, without spaces, dashes, dots and parentheses."""
    return f"REGEXP_REPLACE(TRIM({raw}), {lit(SEPARATORS)}, '', 'g')"


def is_masked_phone_sql(raw: str) -> str:
    """True for a masked phone such as 187****8991 (or +86 187****8991)."""
    return f"REGEXP_MATCHES({compact_phone_sql(raw)}, {lit(MASKED)})"


def masked_phone_sql(raw: str) -> str:
    """The canonical masked form `187****8991` of a masked or a full phone.

    The probabilistic matcher compares a full phone with a masked one through it.
    """
    c = compact_phone_sql(raw)
    return f"(SUBSTRING(RIGHT({c}, 11), 1, 3) || '****' || RIGHT({c}, 4))"


def phone_sql(raw: str, settings: NormalizeSettings) -> str:
    """E.164 for a full phone, NULL for anything that is not one."""
    c = compact_phone_sql(raw)
    cc = settings.country_code
    intl = (f"WHEN REGEXP_MATCHES({c}, '^\\+[1-9][0-9]{{6,14}}$') AND NOT {c} LIKE '+{cc}%' THEN {c} "
            f"WHEN REGEXP_MATCHES({c}, '^00[1-9][0-9]{{6,14}}$') AND NOT {c} LIKE '00{cc}%' "
            f"THEN '+' || SUBSTRING({c}, 3) ")
    if cc == "86":
        # Landlines need their trunk 0 or the +86 prefix: a bare 9-11 digit string is not a phone.
        landline = r"^((\+86|0086)0?|0)(10|[2-9][0-9])[0-9]{7,9}$"
        national = (f"WHEN REGEXP_MATCHES({c}, {lit(CN_MOBILE)}) THEN '+86' || RIGHT({c}, 11) "
                    f"WHEN REGEXP_MATCHES({c}, {lit(landline)}) "
                    f"THEN '+86' || REGEXP_REPLACE({c}, '^(\\+86|0086)?0?', '') ")
    else:
        national = (f"WHEN REGEXP_MATCHES({c}, '^(\\+{cc}|00{cc}|0)[1-9][0-9]{{5,13}}$') "
                    f"THEN '+{cc}' || REGEXP_REPLACE({c}, '^(\\+{cc}|00{cc})?0?', '') ")
    already = (f"WHEN REGEXP_MATCHES(LOWER(TRIM({raw})), {lit(HEX64)}) THEN LOWER(TRIM({raw})) "
               if settings.salted else "")
    return f"(CASE {already}{national}{intl}ELSE NULL END)"


def email_sql(raw: str, settings: NormalizeSettings) -> str:
    """Lower-cased, trimmed e-mail; NULL when it is not shaped like one."""
    e = f"LOWER(TRIM({raw}))"
    already = f"WHEN REGEXP_MATCHES({e}, {lit(HEX64)}) THEN {e} " if settings.salted else ""
    return f"(CASE {already}WHEN REGEXP_MATCHES({e}, {lit(EMAIL)}) THEN {e} ELSE NULL END)"


def hex_sql(raw: str, digits: int) -> str:
    """A hex digest of `digits` characters, lower-cased; NULL otherwise."""
    h = f"LOWER(TRIM({raw}))"
    return f"(CASE WHEN REGEXP_MATCHES({h}, '^[0-9a-f]{{{digits}}}$') THEN {h} ELSE NULL END)"


def text_sql(raw: str) -> str:
    """An opaque id: trimmed, NULL when empty."""
    return f"NULLIF(TRIM({raw}), '')"


def _by_normalizer(kind: IdType, raw: str, settings: NormalizeSettings) -> str:
    if kind.normalizer == "phone":
        return phone_sql(raw, settings)
    if kind.normalizer == "masked_phone":
        return f"(CASE WHEN {is_masked_phone_sql(raw)} THEN {masked_phone_sql(raw)} END)"
    if kind.normalizer == "email":
        return email_sql(raw, settings)
    if kind.normalizer in ("md5", "sha256"):
        return hex_sql(raw, 32 if kind.normalizer == "md5" else 64)
    return text_sql(raw)


def salted_sql(value: str, salt_hex: str) -> str:
    """SHA-256(salt bytes + UTF-8 value) in hex, as the importers compute it."""
    return f"SHA256(UNHEX({lit(salt_hex)}) || ENCODE({value}))"


def normalized_type_sql(id_type: str, raw: str) -> str:
    """The id type after normalization: a masked phone is `phone_masked`, not `phone`."""
    return (f"(CASE WHEN {id_type} IN ('phone', 'phone_masked') THEN "
            f"CASE WHEN {is_masked_phone_sql(raw)} THEN 'phone_masked' ELSE 'phone' END "
            f"ELSE {id_type} END)")


def plain_value_sql(id_type: str, raw: str, registry: Registry, settings: NormalizeSettings) -> str:
    """The normalized value before any salting (NULL when invalid for its type).

    `id_type` must already be the normalized type (see `normalized_type_sql`).
    """
    branches = " ".join(
        f"WHEN {id_type} = {lit(kind.name)} THEN {_by_normalizer(kind, raw, settings)}"
        for kind in registry.types
    )
    return f"(CASE {branches} ELSE NULL END)"


def stored_value_sql(id_type: str, plain: str, registry: Registry, settings: NormalizeSettings) -> str:
    """The value as stored: salted for PII types under `salted_hash`, else the plain value."""
    pii = [kind.name for kind in registry.types if kind.pii]
    if not settings.salted or not pii:
        return plain
    return (f"(CASE WHEN {id_type} IN {in_list(pii)} AND NOT REGEXP_MATCHES({plain}, {lit(HEX64)}) "
            f"THEN {salted_sql(plain, settings.salt_hex or '')} ELSE {plain} END)")


def junk_token_sql(raw: str, tokens: list[str]) -> str:
    """True when the raw value is a placeholder such as 'null', 'unknown' or '-'."""
    return f"(LOWER(TRIM({raw})) IN {in_list(tokens)})"


def node_sql(id_type: str, id_value: str) -> str:
    """The graph's vertex key for an identifier: `type:value` (types never hold ':')."""
    return f"({id_type} || ':' || {id_value})"


def hash_forms_sql(source: str) -> str:
    """Every ad-platform hash of the plain phones and e-mails in `source`.

    `source` has columns id_type, id_value (as stored) and plain_value (normalized,
    unsalted; NULL when the value arrived already salted). Returns rows
    (hash_type, hash_value, id_type, id_value): the hashed identifier that should
    link to the stored one.
    """
    phone, mail = "p.plain_value", "m.plain_value"
    national = f"(CASE WHEN {phone} LIKE '+86%' THEN SUBSTRING({phone}, 4) END)"
    no_plus = f"SUBSTRING({phone}, 2)"
    forms = []
    for spelled in (national, phone, no_plus):
        forms.append(f"SELECT 'phone_md5' AS hash_type, MD5({spelled}) AS hash_value, p.id_type, p.id_value "
                     f"FROM {source} AS p WHERE p.id_type = 'phone' AND {spelled} IS NOT NULL")
        forms.append(f"SELECT 'phone_sha256', SHA256({spelled}), p.id_type, p.id_value "
                     f"FROM {source} AS p WHERE p.id_type = 'phone' AND {spelled} IS NOT NULL")
    forms.append(f"SELECT 'email_md5', MD5({mail}), m.id_type, m.id_value FROM {source} AS m "
                 f"WHERE m.id_type = 'email' AND {mail} IS NOT NULL")
    forms.append(f"SELECT 'email_sha256', SHA256({mail}), m.id_type, m.id_value FROM {source} AS m "
                 f"WHERE m.id_type = 'email' AND {mail} IS NOT NULL")
    return "\nUNION ALL\n".join(forms)
