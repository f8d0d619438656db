"""Ground truth: demo-truth/persons.parquet, identifiers.parquet, holiday_shoppers.parquet
and patterns.json.

The truth is what generated the files, so the analytics can be scored: identity
resolution against `identifiers.parquet` (every identifier in canonical form,
phones as E.164), clustering against `persons.persona`, and each planted pattern
against its true parameters (planted and as realized in this run) in `patterns.json`,
and an audience for the holiday pattern against `holiday_shoppers.parquet`.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.patterns import realized_patterns
from jingzhun.demo.vectors import concat


def write_truth(ctx: DemoContext, files: list[DemoFile]) -> None:
    """Write the three truth files (not listed as sources: importers must not read them)."""
    ctx.truth_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(persons_table(ctx), ctx.truth_dir / "persons.parquet")
    pq.write_table(identifiers_table(ctx), ctx.truth_dir / "identifiers.parquet")
    pq.write_table(holiday_shoppers_table(ctx), ctx.truth_dir / "holiday_shoppers.parquet")
    patterns = realized_patterns(ctx, files)
    patterns.update(ctx.shared.get("patterns", {}))  # type: ignore[arg-type]
    text = json.dumps(patterns, ensure_ascii=False, indent=2, sort_keys=False)
    (ctx.truth_dir / "patterns.json").write_text(text + "\n", encoding="utf-8")


def persons_table(ctx: DemoContext) -> pa.Table:
    """Every Population column; dates as date32, id lists as list<string>."""
    cols = {}
    for name, values in ctx.population.columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind == "M":
            cols[name] = pa.array(values.astype("datetime64[D]")).cast(pa.date32())
        elif isinstance(values, np.ndarray) and values.dtype == object:
            cols[name] = pa.array(values, type=pa.string())
        else:
            cols[name] = pa.array(values) if isinstance(values, np.ndarray) else values
    return pa.table(cols)


HOLIDAY_GROUP = ("womens_day", "double_11")  # the holidays of the planted audience (38 妇女节, 双11)
HOLIDAY_GROUP_CATEGORIES = ("apparel", "cosmetics")


def holiday_shoppers_table(ctx: DemoContext) -> pa.Table:
    """(person_key, holiday, holiday_date): women who bought apparel or cosmetics within
    ± HOLIDAY_WINDOW_DAYS of 38 妇女节 or 双11, one row per person and holiday date.

    The planted group of the holiday pattern, from the simulated orders themselves
    (before any file is formatted or broken), so an audience defined over the loaded
    data can be scored against it.
    """
    from jingzhun.demo.calendar import HOLIDAY_WINDOW_DAYS, holidays
    from jingzhun.demo.orders import orders_of
    from jingzhun.demo.sessions import sessions_of

    o = orders_of(ctx)
    day = sessions_of(ctx).day[o.session][o.line_order]  # days since ctx.start, per line
    person = o.person[o.line_order]
    wanted = np.isin(np.asarray(ctx.catalog["category"], dtype=object)[o.line_sku],
                     HOLIDAY_GROUP_CATEGORIES) & (ctx.population["gender"][person] == "F")
    parts = []
    for name, when in holidays(ctx.start, ctx.end):
        if name not in HOLIDAY_GROUP:
            continue
        centre = (when - ctx.start).days
        near = wanted & (np.abs(day - centre) <= HOLIDAY_WINDOW_DAYS)
        keys = np.unique(person[near])
        parts.append(pa.table({"person_key": pa.array(keys, pa.int64()),
                               "holiday": pa.array([name] * len(keys), pa.string()),
                               "holiday_date": pa.array([when] * len(keys), pa.date32())}))
    if not parts:
        return pa.table({"person_key": pa.array([], pa.int64()), "holiday": pa.array([], pa.string()),
                         "holiday_date": pa.array([], pa.date32())})
    return pa.concat_tables(parts)


def identifiers_table(ctx: DemoContext) -> pa.Table:
    """(person_key, id_type, id_value) for every identifier the files carry, canonical.

    Canonical forms: phone E.164 (+86...), e-mail lower case, others as written.
    Includes second member ids and phones of CRM duplicates, marketplace buyer ids of
    persons who ordered there, and any tables other modules appended to
    ctx.shared["identifiers"].
    """
    pop = ctx.population
    key = pa.array(pop["person_key"])
    parts = [_pairs(key, "member_id", pop["member_id"]),
             _pairs(key, "phone", concat("+86", pop["phone"])),
             _pairs(key, "email", pc.utf8_lower(pop["email"]))]
    for col in ("wechat_openid", "wechat_unionid", "douyin_user_id", "weibo_user_id"):
        parts.append(_pairs(key, col, pop[col]))
    for col, id_type in (("device_ids", "device_id"), ("anonymous_ids", "anonymous_id")):
        lists = pop[col]
        owner = pc.list_parent_indices(lists)
        parts.append(_pairs(key.take(owner), id_type, pc.list_flatten(lists)))
    parts += _duplicate_pairs(ctx) + _marketplace_pairs(ctx)
    parts += list(ctx.shared.get("identifiers", []))  # type: ignore[arg-type]
    return pa.concat_tables([p.cast(parts[0].schema) for p in parts])


def _pairs(person: pa.Array, id_type: str, values: pa.Array | np.ndarray) -> pa.Table:
    values = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
    valid = pc.is_valid(values)
    return pa.table({"person_key": person.filter(valid),
                     "id_type": pa.array([id_type] * int(pc.sum(valid).as_py() or 0),
                                         type=pa.string()),
                     "id_value": values.filter(valid)})


def _duplicate_pairs(ctx: DemoContext) -> list[pa.Table]:
    from jingzhun.demo.crm import duplicates_of

    dup = duplicates_of(ctx)
    person = pa.array(ctx.population["person_key"][dup["person"]])
    new = pa.array(dup["new_phone"])
    return [_pairs(person, "member_id", dup["member_id"]),
            _pairs(person.filter(new), "phone", concat("+86", dup["phone"].filter(new)))]


def _marketplace_pairs(ctx: DemoContext) -> list[pa.Table]:
    """Tmall/JD buyer ids of persons who placed an order there."""
    from jingzhun.demo.commerce import platform_ids
    from jingzhun.demo.orders import orders_of
    from jingzhun.demo.sessions import CHANNELS

    orders = orders_of(ctx)
    ids = platform_ids(ctx)
    out = []
    for channel, name in (("tmall", "tmall_open_uid"), ("jd", "jd_pin")):
        person = np.unique(orders.person[orders.channel == CHANNELS.index(channel)])
        out.append(_pairs(pa.array(person), name, ids[name].take(pa.array(person))))
    return out
