"""The decision API's snapshot: every table it answers from, read with one engine query each.

`snapshot_tables` runs the queries (identifiers, persons, offers, products, related
products, popular products, who may get each marketing channel, coupons, today's
impressions); `write_snapshot` / `read_snapshot` keep them as Arrow IPC files under the
workspace's `.jingzhun/decisions/<version>/`, so the server's HTTP process — which never
opens the database — loads what its engine process built; `DecisionSnapshot` holds them
in memory in the shape a request needs: dictionaries keyed by identifier and person, and
each person's offers as one slice of flat arrays.

Who may get a marketing message is the send policy's own query (`activation.policy`):
consent under the workspace's regime, suppressions of any of the person's identifiers,
a usable address, and the campaigns' frequency caps, decided as of the build.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from sqlglot import exp

from jingzhun.activation.content_context import CATEGORY_NAMES
from jingzhun.activation.coupons import money_text
from jingzhun.activation.decisions_settings import DecisionSettings
from jingzhun.activation.policy import SendRequest, literal, load_send_policy, policy_sql
from jingzhun.activation.recommend_serving import PRODUCT_INFO
from jingzhun.activation.recommend_sql import bind
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine

SNAPSHOT_DIR = ".jingzhun/decisions"
KEEP = 3  # snapshot folders kept on disk (the one in use and the ones before it)

IDENTIFIERS_SQL = """
SELECT i.id_type, i.id_value, i.person_id FROM identities AS i
JOIN persons AS p ON p.person_id = i.person_id AND p.status = 'active'
UNION ALL
SELECT 'person_id' AS id_type, p.person_id AS id_value, p.person_id FROM persons AS p WHERE p.status = 'active'
UNION ALL
SELECT 'person_id' AS id_type, m.person_id AS id_value, COALESCE(t.merged_into, m.merged_into) AS person_id
FROM persons AS m LEFT JOIN persons AS t ON t.person_id = m.merged_into AND t.status = 'merged'
WHERE m.status = 'merged' AND m.merged_into IS NOT NULL
"""
PERSONS_SQL = """
SELECT p.person_id, t.name, t.gender, t.member_level, t.city, t.province, t.favourite_category
FROM persons AS p LEFT JOIN person_traits AS t ON t.person_id = p.person_id WHERE p.status = 'active'
"""
OFFERS_SQL = """
SELECT r.person_id, r.kind, r.rank, r.product_id, r.score, r.reason_zh, r.reason_en, r.model_version
FROM recommendations AS r JOIN persons AS p ON p.person_id = r.person_id AND p.status = 'active'
WHERE r.kind IN ({kinds}) AND r.rank <= :depth
ORDER BY r.person_id, r.kind, r.rank
"""
PRODUCTS_SQL = f"SELECT product_id, name, category, price FROM {PRODUCT_INFO} AS p"
RELATED_SQL = """
SELECT product_id, rank, related_product_id, score, basis, reason_zh, reason_en FROM related_products
WHERE rank <= :depth ORDER BY product_id, rank
"""
# For visitors nobody knows: the products most persons' 热门推荐 lists hold, weighted by rank
# (those lists already leave out what is out of stock).
POPULAR_SQL = """
SELECT product_id, SUM(1.0 / rank) AS score, COUNT(*) AS persons FROM recommendations WHERE kind = 'popular'
GROUP BY product_id ORDER BY score DESC, product_id LIMIT :n
"""
COUPONS_SQL = """
SELECT campaign_id, person_id, code, name_zh, name_en, discount_type, CAST(discount_value AS DOUBLE) AS discount_value,
  CAST(min_spend AS DOUBLE) AS min_spend, currency, valid_from, valid_to
FROM coupons WHERE campaign_id IN ({campaigns}) AND valid_to > :now
"""
IMPRESSIONS_SQL = """
SELECT person_id, placement, COUNT(*) AS shown FROM decisions
WHERE day = :day AND person_id IS NOT NULL AND product_ids <> '[]'
GROUP BY person_id, placement
"""
# What the snapshot depends on: when one of these changes, the server rebuilds it (deliveries: a
# campaign's sends count toward the frequency caps the marketing placements obey).
FINGERPRINT_SQL = """
SELECT 'recommendations' AS source, COUNT(*) AS n, CAST(MAX(computed_at) AS VARCHAR) AS latest FROM recommendations
UNION ALL SELECT 'related_products', COUNT(*), CAST(MAX(computed_at) AS VARCHAR) FROM related_products
UNION ALL SELECT 'persons', COUNT(*), CAST(MAX(updated_at) AS VARCHAR) FROM persons
UNION ALL SELECT 'identities', COUNT(*), CAST(MAX(last_seen) AS VARCHAR) FROM identities
UNION ALL SELECT 'person_traits', COUNT(*), CAST(MAX(computed_at) AS VARCHAR) FROM person_traits
UNION ALL SELECT 'products', COUNT(*), CAST(MAX(updated_at) AS VARCHAR) FROM products
UNION ALL SELECT 'consents', COUNT(*), CAST(MAX(recorded_at) AS VARCHAR) FROM consents
UNION ALL SELECT 'suppressions', COUNT(*), CAST(MAX(created_at) AS VARCHAR) FROM suppressions
UNION ALL SELECT 'coupons', COUNT(*), CAST(MAX(issued_at) AS VARCHAR) FROM coupons
UNION ALL SELECT 'deliveries', COUNT(*), CAST(MAX(scheduled_at) AS VARCHAR) FROM deliveries
"""
CONFIG_FILES = ("decisions.yaml", "send_policy.yaml", "identity.yaml", "templates")


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot is: its version, when and from what it was built, and its row counts."""

    version: str
    built_at: str
    day: str  # the local day its impression counts are for
    model_version: str | None
    fingerprint: dict[str, str]
    rows: dict[str, int] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


def fingerprint(engine: Engine, workspace: Workspace) -> dict[str, str]:
    """Row counts and latest times of every input, and the definition files' change times."""
    found = {row["source"]: f"{row['n']}@{row['latest']}" for row in engine.query(FINGERPRINT_SQL).to_pylist()}
    for name in CONFIG_FILES:
        path = workspace.definitions_dir / name
        stamps = [path.stat().st_mtime_ns] if path.is_file() else (
            sorted(p.stat().st_mtime_ns for p in path.glob("*.yaml")) if path.is_dir() else [])
        found[f"file:{name}"] = ",".join(map(str, stamps))
    return found


def snapshot_tables(engine: Engine, workspace: Workspace, settings: DecisionSettings, now: datetime,
                    today: date) -> tuple[dict[str, pa.Table], dict[str, str]]:
    """Every table of a snapshot (one query each) and the SQL that read it."""
    placements = settings.all_placements().values()
    kinds = sorted({kind for placement in placements for kind in placement.kinds})
    depth = settings.max_offers() * 2  # room to skip a product one list repeats from another
    queries: dict[str, exp.Expression] = {
        "identifiers": bind(IDENTIFIERS_SQL, {}), "persons": bind(PERSONS_SQL, {}),
        "offers": bind(OFFERS_SQL.format(kinds=", ".join(f":kind_{i}" for i in range(len(kinds)))),
                       {"depth": depth, **{f"kind_{i}": kind for i, kind in enumerate(kinds)}}),
        "products": bind(PRODUCTS_SQL, {}), "related": bind(RELATED_SQL, {"depth": depth}),
        "popular": bind(POPULAR_SQL, {"n": settings.fallback_offers}),
        "impressions": bind(IMPRESSIONS_SQL, {"day": today}),
    }
    campaigns = settings.coupon_campaigns()
    if campaigns:
        listed = ", ".join(f":campaign_{i}" for i in range(len(campaigns)))
        queries["coupons"] = bind(COUPONS_SQL.format(campaigns=listed),
                                  {"now": now, **{f"campaign_{i}": c for i, c in enumerate(campaigns)}})
    for channel in settings.message_channels():
        queries[f"blocked_{channel}"] = _blocked_sql(workspace, channel, now)
    tables = {name: engine.query(query) for name, query in queries.items()}
    return tables, {name: engine.render(query) for name, query in queries.items()}


def _blocked_sql(workspace: Workspace, channel: str, now: datetime) -> exp.Expression:
    """Persons who may not get a marketing message on `channel` now, and why (the send policy's query)."""
    everyone = exp.select("person_id").from_("persons").where(exp.column("status").eq(literal("active")))
    request = SendRequest(campaign_id="decision-api", run_id="snapshot", purpose="marketing", channels=(channel,),
                          audience=everyone, now=now)
    decided = policy_sql(request, load_send_policy(workspace))
    return (exp.select("person_id", "reason").from_(decided.subquery("decided"))
            .where(exp.column("status").neq(literal("queued"))))


# ---- files ---------------------------------------------------------------------------------------


def snapshot_root(workspace: Workspace) -> Path:
    return workspace.resolve(SNAPSHOT_DIR)


def new_version(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def write_snapshot(workspace: Workspace, tables: dict[str, pa.Table], meta: SnapshotMeta) -> Path:
    """Write the tables and meta.json to a new folder, then point `current` at it (atomic rename)."""
    root = snapshot_root(workspace)
    folder = root / meta.version
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        with ipc.new_file(folder / f"{name}.arrow", table.schema) as writer:
            writer.write_table(table)
    (folder / "meta.json").write_text(json.dumps(asdict(meta), ensure_ascii=False), encoding="utf-8")
    pointer = root / f"current.{uuid.uuid4().hex[:6]}"
    pointer.write_text(meta.version, encoding="utf-8")
    pointer.replace(root / "current")
    _prune(root, meta.version)
    return folder


def _prune(root: Path, keep: str) -> None:
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in folders[:-KEEP]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def current_snapshot(workspace: Workspace) -> Path | None:
    """The folder `current` points at, if it is complete."""
    pointer = snapshot_root(workspace) / "current"
    try:
        folder = snapshot_root(workspace) / pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return folder if (folder / "meta.json").is_file() else None


def read_snapshot(folder: Path) -> tuple[dict[str, pa.Table], SnapshotMeta]:
    meta = SnapshotMeta(**json.loads((folder / "meta.json").read_text(encoding="utf-8")))
    tables = {}
    for path in folder.glob("*.arrow"):
        with pa.memory_map(str(path)) as source:
            tables[path.stem] = ipc.open_file(source).read_all()
    return tables, meta


# ---- in memory -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """A product as offers show it; `zh`/`en` are the copy context's product dicts (without reason)."""

    product_id: str
    name: str
    category: str | None
    price: float | None
    zh: dict
    en: dict


class DecisionSnapshot:
    """The tables of one snapshot, shaped for lookups; never changed once built (swap, don't edit)."""

    def __init__(self, tables: dict[str, pa.Table], meta: SnapshotMeta, site_url: str | None, currency: str) -> None:
        self.meta = meta
        self.products = products = _products(tables["products"], site_url or "", currency)
        self.ids = _pairs(tables["identifiers"], ("id_type", "id_value"), "person_id")
        self.persons = _rows(tables["persons"], "person_id")
        self.offers = _grouped(tables["offers"], "person_id", ("product_id", "kind", "score", "reason_zh", "reason_en"))
        self.related = _grouped(tables["related"], "product_id",
                                ("related_product_id", "basis", "score", "reason_zh", "reason_en"))
        self.popular = [(row["product_id"], float(row["score"])) for row in tables["popular"].to_pylist()
                        if row["product_id"] in products]
        self.blocked = {name.removeprefix("blocked_"): dict(zip(table.column("person_id").to_pylist(),
                                                                table.column("reason").to_pylist(), strict=True))
                        for name, table in tables.items() if name.startswith("blocked_")}
        self.coupons: dict[tuple[str, str], dict] = {
            (row["campaign_id"], row["person_id"]): row for row in tables["coupons"].to_pylist()
        } if "coupons" in tables else {}
        self.impressions = {(row["person_id"], row["placement"]): int(row["shown"])
                            for row in tables["impressions"].to_pylist()}

    def person_of(self, id_type: str, value: str) -> str | None:
        return self.ids.get(f"{id_type}\x1f{value}")


def _products(table: pa.Table, site: str, currency: str) -> dict[str, Product]:
    """Each product with the copy context's product dict per language (content_context's keys)."""
    found = {}
    for row in table.to_pylist():
        names = CATEGORY_NAMES.get(row["category"] or "", (row["category"] or "", row["category"] or ""))
        price = row["price"]
        base = {"id": row["product_id"], "name": row["name"] or row["product_id"], "price": price,
                "price_text": money_text(price, currency) if price is not None else "", "category": row["category"],
                "url": f"{site.rstrip('/')}/product/{row['product_id']}" if site else "", "reason": ""}
        found[row["product_id"]] = Product(row["product_id"], base["name"], row["category"], price,
                                           {**base, "category_name": names[0]}, {**base, "category_name": names[1]})
    return found


def _pairs(table: pa.Table, keys: tuple[str, str], value: str) -> dict[str, str]:
    """`type\\x1fvalue` → person (the unit separator never occurs in a normalized identifier)."""
    joined = pc.binary_join_element_wise(table.column(keys[0]), table.column(keys[1]), "\x1f")
    return dict(zip(joined.to_pylist(), _shared(table.column(value)), strict=True))


def _grouped(table: pa.Table, key: str, columns: tuple[str, ...]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    lists = [_shared(table.column(name)) for name in columns]
    for index, owner in enumerate(_shared(table.column(key))):
        out.setdefault(owner, []).append(tuple(values[index] for values in lists))
    return out


def _rows(table: pa.Table, key: str) -> dict[str, dict]:
    """Each row as a dict, by `key` (its texts shared as in `_shared`)."""
    names = table.column_names
    columns = [_shared(table.column(name)) for name in names]
    at = names.index(key)
    return {values[at]: dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)}


def _shared(column: pa.ChunkedArray) -> list:
    """The column's values as Python objects, each distinct text one object however often it
    repeats: an offer's product, kind and reason recur across persons (on the 20k demo, 580k
    offers hold ~1,500 distinct texts), and one `str` per row made the offers 6× larger."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column.to_pylist()
    encoded = pc.dictionary_encode(column).combine_chunks()
    texts = encoded.dictionary.to_pylist()
    return [None if index is None else texts[index] for index in encoded.indices.to_pylist()]
