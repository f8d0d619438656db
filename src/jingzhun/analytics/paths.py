"""Paths: what people do next after an event (or did just before it), within a session.

Sessions are cut the way the portrait counts them: a person's events with no gap longer
than 30 minutes. Each session's first occurrence of the anchor event is followed
`depth` steps forward (`next`) or backward (`previous`); a session that ends sooner
ends in "(end)" (or starts at "(start)" going backward). At each depth the `top` most
common steps keep their names and the rest are pooled as "(other)", so the Sankey
stays readable. The answer is a table of edges:

    depth, source, target, paths, persons, share   (share = paths / all paths leaving source)

with `source` the earlier step and `target` the later one in both directions. A step is
the event name of a `track` call, or "Page Viewed", "Screen Viewed", "Identify" for the
other Segment calls; `property` (e.g. `category`) appends that event property
("Product Viewed · cosmetics"). One SELECT; `Analysis.sql["paths"]` reruns it as is.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlglot import exp

from jingzhun.analytics.behaviour_common import (
    DEFAULT_TIMEZONE,
    EVENT_OWNER,
    analytics_error,
    bind,
    check_range,
    choose,
    day_start,
    ratio,
    rounded,
)
from jingzhun.analytics.result import Analysis, Chart
from jingzhun.engine import Engine, json_text
from jingzhun.profiles.rules import property_name

DIRECTIONS = ("next", "previous")
SESSION_GAP_SECONDS = 30 * 60
MAX_DEPTH = 10
OTHER, END, START = "(other)", "(end)", "(start)"

_LABEL = """CASE WHEN e.type = 'track' THEN e.event WHEN e.type = 'page' THEN 'Page Viewed'
  WHEN e.type = 'screen' THEN 'Screen Viewed' WHEN e.type = 'identify' THEN 'Identify'
  ELSE e.type END"""


def _label(prop: str | None) -> str:
    if prop is None:
        return _LABEL
    value = json_text(exp.column("properties", table="e"), f"$.{prop}").sql("duckdb")
    return f"CASE WHEN {value} IS NULL THEN {_LABEL} ELSE CONCAT({_LABEL}, ' · ', {value}) END"


def paths_sql(anchor: str, *, direction: str = "next", depth: int = 3, top: int = 8,
              prop: str | None = None, start: dt.datetime | None = None,
              end: dt.datetime | None = None):
    """The edges SELECT: depth, source, target, paths, persons, share.

    Example:
        >>> "session_no" in paths_sql("Product Viewed").sql("duckdb")
        True
    """
    bounds = [*(["e.timestamp >= :lo"] if start else []), *(["e.timestamp < :hi"] if end else [])]
    where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
    forward = direction == "next"
    step = "s.pos - a.anchor_pos" if forward else "a.anchor_pos - s.pos"
    boundary = (f"SELECT person_id, session_no, anchor_pos, length - anchor_pos + 1 AS depth, '{END}' AS step "
                "FROM anchors WHERE length - anchor_pos + 1 <= :depth") if forward else \
        (f"SELECT person_id, session_no, anchor_pos, anchor_pos AS depth, '{START}' AS step "
         "FROM anchors WHERE anchor_pos <= :depth")
    sql = f"""WITH labelled AS (SELECT rp.person_id, e.timestamp AS ts, e.message_id, {_LABEL} AS base,
    {_label(prop)} AS step FROM events AS e {EVENT_OWNER} {where}),
gaps AS (SELECT *, CASE WHEN EPOCH(ts) - EPOCH(LAG(ts) OVER (PARTITION BY person_id ORDER BY ts, message_id))
    <= {SESSION_GAP_SECONDS} THEN 0 ELSE 1 END AS starts_session FROM labelled),
sessions AS (SELECT *, SUM(starts_session) OVER (PARTITION BY person_id ORDER BY ts, message_id
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no FROM gaps),
ordered AS (SELECT person_id, session_no, base, step, ROW_NUMBER() OVER (PARTITION BY person_id, session_no
    ORDER BY ts, message_id) AS pos FROM sessions),
lengths AS (SELECT person_id, session_no, MAX(pos) AS length FROM ordered GROUP BY person_id, session_no),
anchors AS (SELECT f.person_id, f.session_no, f.anchor_pos, l.length FROM
    (SELECT person_id, session_no, MIN(pos) AS anchor_pos FROM ordered WHERE base = :anchor
     GROUP BY person_id, session_no) AS f
    JOIN lengths AS l ON l.person_id = f.person_id AND l.session_no = f.session_no),
walked AS (SELECT a.person_id, a.session_no, a.anchor_pos, {step} AS depth, s.step
    FROM anchors AS a JOIN ordered AS s ON s.person_id = a.person_id AND s.session_no = a.session_no
    AND {step} BETWEEN 0 AND :depth
  UNION ALL {boundary}),
counts AS (SELECT depth, step, COUNT(*) AS n FROM walked WHERE depth > 0 GROUP BY depth, step),
ranked AS (SELECT depth, step, ROW_NUMBER() OVER (PARTITION BY depth ORDER BY n DESC, step) AS place
    FROM counts WHERE step NOT IN ('{END}', '{START}')),
named AS (SELECT w.person_id, w.session_no, w.anchor_pos, w.depth,
    CASE WHEN w.depth = 0 OR w.step IN ('{END}', '{START}') OR r.place <= :top THEN w.step
      ELSE '{OTHER}' END AS node
    FROM walked AS w LEFT JOIN ranked AS r ON r.depth = w.depth AND r.step = w.step),
edges AS (SELECT t.depth, {'s.node' if forward else 't.node'} AS source, {'t.node' if forward else 's.node'}
    AS target, COUNT(*) AS paths, COUNT(DISTINCT t.person_id) AS persons
    FROM named AS t JOIN named AS s ON s.person_id = t.person_id AND s.session_no = t.session_no
      AND s.anchor_pos = t.anchor_pos AND s.depth = t.depth - 1
    WHERE t.depth > 0 GROUP BY t.depth, {'s.node, t.node' if forward else 't.node, s.node'})
SELECT depth, source, target, paths, persons,
  {ratio('paths', f"SUM(paths) OVER (PARTITION BY depth, {'source' if forward else 'target'})")} AS share
FROM edges ORDER BY depth, paths DESC, source, target"""
    values = {"anchor": anchor, "depth": depth, "top": top}
    return bind(sql, **values, **({"lo": start} if start else {}), **({"hi": end} if end else {}))


def paths(engine: Engine, anchor: str, *, direction: str = "next", depth: int = 3, top: int = 8,
          prop: str | None = None, start: dt.date | None = None, end: dt.date | None = None,
          timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """The most common steps after (or before) `anchor` within sessions, as Sankey edges.

    Args:
        anchor: the step to start from, e.g. "Product Viewed" (or "Page Viewed").
        direction: `next` (what follows) or `previous` (what led to it).
        depth: how many steps to follow (1-10).
        top: steps kept by name at each depth; the rest become "(other)".
        prop: an event property to append to step names (e.g. `category`).
        start, end: local days (workspace time zone) of the events used, inclusive.

    Returns:
        `Analysis` "paths": one row per edge (depth, source, target).
    """
    choose(direction, DIRECTIONS, "direction")
    _check_counts(depth, top)
    check_range(start, end)
    if prop is not None:
        try:
            property_name(prop)
        except ValueError:
            raise analytics_error(f"{prop!r} is not an event property name.", f"{prop!r} 不是事件属性名。",
                                  "property", "use letters, digits, underscores; dots for nesting",
                                  "只用字母、数字、下划线，嵌套用点") from None
    first = day_start(start, timezone) if start else None
    after = day_start(end + dt.timedelta(days=1), timezone) if end else None
    query = paths_sql(anchor, direction=direction, depth=depth, top=top, prop=prop, start=first, end=after)
    frame = rounded(engine.query(query).to_pandas(), ["share"])
    kind = "后续" if direction == "next" else "前序"
    chart = Chart(kind="heatmap", x="target", y=("paths",), series="source",
                  title_zh=f"{anchor} 的{kind}路径", title_en=f"Paths {direction} to {anchor}")
    params = {"anchor": anchor, "direction": direction, "depth": depth, "top": top, "property": prop,
              "start": start, "end": end, "timezone": timezone}
    return Analysis(name="paths", frame=frame, sql={"paths": engine.render(query)}, chart=chart,
                    readings=paths_readings(frame, anchor, direction), params=params)


def _check_counts(depth: int, top: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise analytics_error(f"depth {depth} is out of range.", f"深度 {depth} 超出范围。", "depth",
                              f"use 1 to {MAX_DEPTH}", f"请用 1 到 {MAX_DEPTH}")
    if top < 1:
        raise analytics_error(f"top {top} must be at least 1.", f"top {top} 至少为 1。", "top",
                              "keep at least one step by name, e.g. 8", "至少保留一个步骤名，例如 8")


def paths_readings(frame: pd.DataFrame, anchor: str, direction: str) -> list[tuple[str, str]]:
    """The most common first step after (before) the anchor, and how many sessions end there."""
    first = frame[frame["depth"] == 1].sort_values("paths", ascending=False)
    if first.empty:
        return [(f"没有会话包含 {anchor}。", f"No session contains {anchor}.")]
    column = "target" if direction == "next" else "source"
    total = first["paths"].sum()
    top = first.iloc[0]
    word_zh, word_en = ("之后", "after") if direction == "next" else ("之前", "before")
    readings = [(f"{int(total)} 个会话含 {anchor}；{word_zh}最常见的是 {top[column]}（{top['paths'] / total:.1%}）。",
                 f"{int(total)} sessions contain {anchor}; most common {word_en} it: {top[column]} "
                 f"({top['paths'] / total:.1%}).")]
    boundary = END if direction == "next" else START
    ended = first.loc[first[column] == boundary, "paths"].sum()
    if ended:
        readings.append((f"{ended / total:.1%} 的会话{'在此结束' if direction == 'next' else '由此开始'}。",
                         f"{ended / total:.1%} of sessions {'end' if direction == 'next' else 'start'} there."))
    return readings
