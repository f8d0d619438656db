"""The person-level records the probabilistic matcher compares: one row per CRM member.

A CRM member row (`source_records` of kind `member`) is the one place where a
customer's name, birthday, gender and home region sit beside an identifier, so it
is what Splink compares. The table is built in SQL by the engine; the only Python
step is the pinyin of each distinct *character* (a few thousand), joined back to
names column by column with Arrow, so no loop runs over customers.

Columns prepared for Chinese names:

* `name_pinyin` — toneless pinyin (王静怡 → "wang jing yi"), equal for 同音字 typos
  (王静一) that a CRM clerk picks from a pinyin IME;
* `name_swapped` — the name with its last two characters swapped (张思晗 → 张晗思),
  the other typo a clerk makes; compared against the other record's `name`.

Junk phones are dropped before matching, by the ID graph's own rules
(`definitions/identity.yaml`): the blocklist (test numbers such as 13800138000, a
store's own number) and any phone shared by more than `shared_value_threshold`
members. A junk value is no evidence; dropped, it also stops counting as a shared
identifier, so two records that share only a junk phone are judged on the rest.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Column, Engine, parse_sql
from jingzhun.identity.config import load_identity_config
from jingzhun.identity.graph import normalize_settings
from jingzhun.identity.links import blocklist_sql

RECORDS = "identity_match_records"
MEMBERS = "identity_match_members"
NAMES = "identity_match_names"
ID_TYPE = "member_id"
RECORD_COLUMNS = tuple(Column(name, "VARCHAR") for name in (
    "member_id", "phone", "email", "name", "gender", "birthday", "province", "city",
    "name_pinyin", "name_swapped"))

# One row per member id (the latest import wins), attributes normalized for comparison.
MEMBERS_SQL = """
WITH members AS (
  SELECT identifiers->>'$.member_id' AS member_id,
    identifiers->>'$.phone' AS phone,
    LOWER(TRIM(identifiers->>'$.email')) AS email,
    NULLIF(REPLACE(TRIM(attributes->>'$.name'), ' ', ''), '') AS name,
    UPPER(TRIM(attributes->>'$.gender')) AS gender,
    CAST(TRY_CAST(attributes->>'$.birthday' AS DATE) AS VARCHAR) AS birthday,
    NULLIF(TRIM(attributes->>'$.province'), '') AS province,
    NULLIF(TRIM(attributes->>'$.city'), '') AS city,
    ROW_NUMBER() OVER (PARTITION BY identifiers->>'$.member_id'
                       ORDER BY imported_at DESC, occurred_at DESC, record_id DESC) AS newest
  FROM source_records
  WHERE kind = 'member' AND identifiers->>'$.member_id' IS NOT NULL
),
latest AS (SELECT * FROM members WHERE newest = 1),
junk_phones AS (
  SELECT phone FROM latest WHERE phone IS NOT NULL
  GROUP BY phone HAVING COUNT(*) > :shared_value_threshold
  UNION
  SELECT id_value AS phone FROM ({blocklist}) AS b WHERE b.id_type = 'phone'
)
SELECT m.member_id,
  CASE WHEN j.phone IS NULL THEN m.phone END AS phone,
  m.email, m.name, m.gender, m.birthday, m.province, m.city
FROM latest AS m LEFT JOIN junk_phones AS j ON m.phone = j.phone
"""

# Names with their pinyin and swapped-characters form. Ordered, so that Splink's seeded
# sampling draws the same pairs, and a re-run with no new data gives the same model.
RECORDS_SQL = f"""
SELECT m.*, n.name_pinyin,
  CASE WHEN LENGTH(m.name) >= 3 THEN
    SUBSTRING(m.name, 1, LENGTH(m.name) - 2) || SUBSTRING(m.name, LENGTH(m.name), 1)
      || SUBSTRING(m.name, LENGTH(m.name) - 1, 1)
  END AS name_swapped
FROM {MEMBERS} AS m LEFT JOIN {NAMES} AS n ON m.name = n.name
ORDER BY m.member_id
"""


def build_match_records(engine: Engine, workspace: Workspace | None) -> int:
    """Materialize `identity_match_records`; return how many members it holds."""
    config = load_identity_config(workspace)
    blocklist = blocklist_sql(config, config.registry(), normalize_settings(workspace))
    bound = exp.replace_placeholders(
        parse_sql(MEMBERS_SQL.format(blocklist=blocklist)),
        shared_value_threshold=exp.convert(config.shared_value_threshold))
    engine.materialize(MEMBERS, bound)
    names = engine.query(f"SELECT DISTINCT name FROM {MEMBERS} WHERE name IS NOT NULL").column("name")
    engine.write_table(NAMES, name_keys(names.combine_chunks()), mode="replace")
    engine.materialize(RECORDS, RECORDS_SQL)
    engine.drop_table(MEMBERS)
    engine.drop_table(NAMES)
    return engine.row_count(RECORDS)


def name_keys(names: pa.Array) -> pa.Table:
    """Each distinct name with its toneless pinyin, computed per distinct character.

    Example:
        >>> name_keys(pa.array(["王静怡", "王静一"])).column("name_pinyin").to_pylist()
        ['wang jing yi', 'wang jing yi']
    """
    names = names.cast(pa.string())
    longest = int(pc.max(pc.utf8_length(names)).as_py() or 0) if len(names) else 0
    positions = [pc.utf8_slice_codeunits(names, k, k + 1) for k in range(longest)]
    characters = pc.unique(pa.chunked_array(positions, type=pa.string())).drop_null() if positions \
        else pa.array([], pa.string())
    characters = characters.filter(pc.not_equal(characters, ""))
    readings = pa.array([_reading(char) for char in characters.to_pylist()], pa.string())
    syllables = [pc.take(readings, pc.index_in(chars, value_set=characters)) for chars in positions]
    pinyin = pc.binary_join_element_wise(*syllables, " ", null_handling="skip") if syllables \
        else pa.nulls(len(names), pa.string())
    return pa.table({"name": names, "name_pinyin": pinyin})


def _reading(character: str) -> str:
    """The commonest toneless reading of one character (itself if it is not Chinese)."""
    from pypinyin import Style, lazy_pinyin  # 0.5 s of phrase tables: loaded when first used

    return lazy_pinyin(character, style=Style.NORMAL)[0].lower()
