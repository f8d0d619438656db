"""Marketing and social sources of the demo retailer, and the helpers they share.

`write_marketing_sources` writes what a marketing team really receives: WeChat and
Douyin follower exports, ad-platform spend reports, Baidu-index-like search series,
a questionnaire export, the ERP stock ledger, the campaign tool's send log and the
sales team's leads. Each file is a *view* of the same `Population` and `Catalog`, so
identity resolution can link them, and each planted pattern's true parameters go to
`demo-truth/patterns_marketing.json` so analytics can be checked against them.

The helpers below are shared by the submodules (social, ads, market, surveys,
inventory, campaign_history, leads). Everything works on whole numpy/Arrow arrays:
at a million persons a Python loop over rows would take hours.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.vectors import bytes_to_str

TIME_ZONE = "Asia/Shanghai"
SECONDS_PER_DAY = 86_400

# Age bands used by the fans-vs-buyers pattern (inclusive lower, exclusive upper).
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("16-24", 16, 25), ("25-29", 25, 30), ("30-34", 30, 35), ("35-39", 35, 40),
    ("40-49", 40, 50), ("50+", 50, 200),
)


@dataclass
class SourceResult:
    """What one submodule produced: its files and its section of the truth file."""

    files: list[DemoFile] = field(default_factory=list)
    truth: dict[str, object] = field(default_factory=dict)


def write_marketing_sources(ctx: DemoContext) -> list[DemoFile]:
    """Write every marketing/social source file and `patterns_marketing.json`.

    Order matters only where a later file addresses people through an earlier one:
    the campaign log sends WeChat template messages to the official-account openids
    the follower export created (they differ from mini-program openids, as in WeChat).

    Returns:
        The files written, in writing order (the truth files are not included).
    """
    # Imported here because the submodules import the helpers of this module.
    from jingzhun.demo import (
        ads,
        campaign_history,
        inventory,
        leads,
        market,
        social,
        surveys,
    )

    steps = (("social", social.write_social), ("ads", ads.write_ads),
             ("benchmarks", market.write_benchmarks), ("surveys", surveys.write_surveys),
             ("inventory", inventory.write_inventory),
             ("campaigns", campaign_history.write_message_history),
             ("leads", leads.write_leads))
    files: list[DemoFile] = []
    truth: dict[str, object] = {"generated_with": _run_info(ctx)}
    for done, (name, step) in enumerate(steps):
        ctx.report("marketing", done, len(steps))
        result = step(ctx)
        files.extend(result.files)
        truth[name] = result.truth
    truth["files"] = {str(f.path.relative_to(ctx.out_dir)): _file_info(f) for f in files}
    write_json(ctx.truth_dir / "patterns_marketing.json", truth)
    ctx.report("marketing", len(steps), len(steps))
    return files


def _run_info(ctx: DemoContext) -> dict[str, object]:
    return {"seed": ctx.seed, "persons": ctx.population.size, "start": ctx.start.isoformat(),
            "end": ctx.end.isoformat(), "time_zone": TIME_ZONE}


def _file_info(f: DemoFile) -> dict[str, object]:
    return {"source": f.source, "rows": f.rows, "malformed_rows": f.malformed_rows,
            "encoding": f.encoding, "description": f.description}


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Truth files are JSON with Chinese kept readable (ensure_ascii off)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=_jsonable),
                    encoding="utf-8")


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# ---------------------------------------------------------------- writing files


def write_csv(table: pa.Table, path: Path, encoding: str = "utf-8") -> None:
    """Write a CSV the way the source exports it.

    The header is written unquoted (real exports do not quote header names) and
    values are quoted only when needed. `encoding` may be "utf-8", "utf-8-sig"
    (BOM, as Excel-oriented SaaS exports do) or "gb18030" (Chinese desktop tools;
    transcoded in memory, so keep such files small).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    header = (",".join(table.column_names) + "\n").encode("utf-8")
    if encoding == "gb18030":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, write_options=options)
        text = header + sink.getvalue().to_pybytes()
        path.write_bytes(text.decode("utf-8").encode("gb18030"))
        return
    with path.open("wb") as out:
        out.write((b"\xef\xbb\xbf" if encoding == "utf-8-sig" else b"") + header)
        pacsv.write_csv(table, out, write_options=options)


def emit(ctx: DemoContext, source: str, rel_path: str, table: pa.Table, malformed: int,
         description: str, encoding: str = "utf-8") -> DemoFile:
    """Write `table` under the data dir and describe it as a `DemoFile`."""
    path = ctx.data_dir / rel_path
    write_csv(table, path, encoding)
    return DemoFile(source=source, path=path, rows=table.num_rows, malformed_rows=malformed,
                    encoding=encoding, description=description)


def write_truth_table(ctx: DemoContext, name: str, table: pa.Table) -> Path:
    """Row-level ground truth (who is behind an export row) as Parquet."""
    import pyarrow.parquet as pq

    path = ctx.truth_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------- times


def day0(d: date) -> np.int64:
    """Local midnight of `d` as seconds since 1970-01-01 local (naive wall clock)."""
    return np.int64((d - date(1970, 1, 1)).days) * SECONDS_PER_DAY


def span_days(ctx: DemoContext) -> int:
    """Number of simulated days, both ends included."""
    return (ctx.end - ctx.start).days + 1


def fmt_time(seconds: np.ndarray, fmt: str, valid: np.ndarray | None = None) -> pa.Array:
    """Format local wall-clock seconds as strings; rows where `valid` is False are null.

    Times are kept as naive local seconds throughout: platforms export Beijing time
    without an offset, and so do these files. Supports %Y %m %d %H %M %S and
    literal ASCII; built as a byte matrix because Arrow's strftime costs ~1 us a row.
    """
    secs = np.asarray(seconds, dtype=np.int64)
    if not len(secs):
        return pa.array([], type=pa.string())
    day = secs // SECONDS_PER_DAY
    sod = secs - day * SECONDS_PER_DAY
    lo = int(day.min())
    cal = np.arange(lo, int(day.max()) + 1).astype("datetime64[D]")
    month = cal.astype("datetime64[M]")
    fields = {"Y": ((month.astype("datetime64[Y]").astype(np.int64) + 1970)[day - lo], 4),
              "m": ((month.astype(np.int64) % 12 + 1)[day - lo], 2),
              "d": (((cal - month).astype(np.int64) + 1)[day - lo], 2),
              "H": (sod // 3600, 2), "M": (sod // 60 % 60, 2), "S": (sod % 60, 2)}
    blocks = []
    for token in re.findall(r"%[YmdHMS]|[^%]+", fmt):  # a few tokens, not rows
        if token.startswith("%"):
            values, width = fields[token[1]]
            powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
            blocks.append((values[:, None] // powers % 10 + 48).astype(np.uint8))
        else:
            lit = np.frombuffer(token.encode("ascii"), dtype=np.uint8)
            blocks.append(np.broadcast_to(lit, (len(secs), len(lit))))
    out = bytes_to_str(np.hstack(blocks))
    if valid is not None:
        out = pc.if_else(pa.array(np.asarray(valid, dtype=bool)), out, pa.scalar(None, pa.string()))
    return out


def dates_of(values: np.ndarray | pa.Array) -> np.ndarray:
    """A date column as numpy datetime64[D] whatever array type the contract used."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values).astype("datetime64[D]")


def ages_at(birth: np.ndarray | pa.Array, ref: date) -> np.ndarray:
    """Whole years of age on `ref` (birthday-exact)."""
    b = dates_of(birth)
    years = b.astype("datetime64[Y]").astype(np.int64) + 1970
    ref_year = np.datetime64(ref, "D").astype("datetime64[Y]").astype(np.int64) + 1970
    birthday = (b - b.astype("datetime64[Y]")).astype(np.int64)  # day of year, 0-based
    ref_doy = int((np.datetime64(ref, "D") - np.datetime64(ref, "Y")).astype(np.int64))
    return ref_year - years - (birthday > ref_doy).astype(np.int64)


def age_band_index(ages: np.ndarray) -> np.ndarray:
    """Index into AGE_BANDS for each age (ages below 16 fall in the first band)."""
    uppers = np.array([b[2] for b in AGE_BANDS[:-1]])
    return np.searchsorted(uppers, ages, side="right")


def choose(rng: np.random.Generator, options: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    return options[rng.choice(len(options), size=n, p=p / p.sum())]


def end_sec(ctx: DemoContext) -> np.int64:
    return day0(ctx.end) + SECONDS_PER_DAY - 1


def first_contact_times(rng: np.random.Generator, ctx: DemoContext,
                         person: np.ndarray) -> np.ndarray:
    """Local seconds of a first social contact: soon after signup, inside the period.

    Persons who signed up before the period contact the account uniformly within
    it; the others within weeks of signing up (waking hours only).
    """
    signup = np.asarray(ctx.population["signup_date"], dtype="datetime64[D]")[person]
    start = np.datetime64(ctx.start, "D")
    days = span_days(ctx)
    offset = (signup - start).astype(np.int64)
    soon = offset + rng.exponential(30.0, len(person)).astype(np.int64)
    uniform = rng.integers(0, days, len(person))
    day = np.where((offset > 0) & (soon < days), soon, uniform)
    clock = rng.integers(8 * 3600, 23 * 3600, len(person))
    return day0(ctx.start) + day * SECONDS_PER_DAY + clock


def promo_curve(ctx: DemoContext) -> np.ndarray:
    """Daily marketing intensity (1 = ordinary day) from the shopping calendar.

    双11 ramps up from 20 October (x2.5 on the day), 618 from 1 June (x2), 女王节
    from 1 March (x1.4); the Spring Festival week dips to x0.6. Ad budgets, the
    industry index and search volumes all follow it, so the market moves together.
    """
    from jingzhun.demo.calendar import holidays

    days = np.arange(span_days(ctx))
    curve = np.ones(len(days))
    shapes = {"double_11": (22, 1.5), "618": (17, 1.0), "womens_day": (7, 0.4)}
    for name, day in holidays(ctx.start, ctx.end):  # a few dates, not rows
        offset = days - (day - ctx.start).days
        if name in shapes:
            lead, peak = shapes[name]
            ramp = np.clip((offset + lead) / lead, 0, 1) * (offset <= 0)
            curve += peak * ramp**2 + 0.3 * peak * ((offset > 0) & (offset <= 2))
        else:
            curve -= 0.4 * (np.abs(offset) <= 4)
    return curve


# ---------------------------------------------------------------- columns


def notnull(values: np.ndarray | pa.Array) -> np.ndarray:
    """Boolean mask of present values for numpy object or Arrow columns."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pd.notna(values), dtype=bool)


def arrow(values: np.ndarray | pa.Array) -> pa.Array:
    """Any column as one Arrow array (chunked arrays combined)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values)


def gather(values: np.ndarray | pa.Array, index: np.ndarray) -> pa.Array:
    """Rows `index` of a column, as Arrow (strings never become Python objects)."""
    return arrow(values).take(pa.array(np.asarray(index, dtype=np.int64)))


def to_str(values: np.ndarray | pa.Array) -> pa.Array:
    """Numbers to their plain decimal text (Arrow cast, not Python formatting)."""
    return pc.cast(arrow(values), pa.string())


def money(values: np.ndarray) -> pa.Array:
    """CNY amounts rounded to fen, as text with two decimals ("1234.50")."""
    fen = np.round(np.asarray(values, dtype=float) * 100).astype(np.int64)
    sign = np.where(fen < 0, "-", "")
    fen = np.abs(fen)
    frac = pc.utf8_lpad(to_str(fen % 100), width=2, padding="0")
    return pc.binary_join_element_wise(pa.array(sign), to_str(fen // 100), ".", frac, "")


def isin(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Membership test by hashing (Arrow); numpy's isin sorts and is slower at 1M rows."""
    found = pc.is_in(pa.array(values), value_set=pa.array(known))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def pick_malformed(rng: np.random.Generator, rows: int, rate: float) -> np.ndarray:
    """Indices of rows to break: round(rate * rows), at least one when rows > 0."""
    k = min(rows, max(1, round(rate * rows))) if rows else 0
    return np.sort(rng.choice(rows, size=k, replace=False)) if k else np.empty(0, np.int64)


def set_rows(values: pa.Array, index: np.ndarray, replacement: str | None) -> pa.Array:
    """Copy of a string column with rows `index` replaced by one literal (or null)."""
    mask = np.zeros(len(values), dtype=bool)
    mask[index] = True
    return pc.if_else(pa.array(mask), pa.scalar(replacement, pa.string()), values)


# ---------------------------------------------------------------- sampling


def sample_by_band(rng: np.random.Generator, candidates: np.ndarray, band: np.ndarray,
                   shares: np.ndarray, n: int) -> np.ndarray:
    """Draw about n of `candidates` so age-band shares match `shares` exactly.

    Stratified rather than weighted so the planted distribution is what the file
    shows, not just its expectation. A band with too few candidates gives all it has.
    """
    picked = []
    for b, share in enumerate(shares):  # a handful of bands, not rows
        pool = candidates[band[candidates] == b]
        want = min(len(pool), int(round(share * n)))
        picked.append(rng.choice(pool, size=want, replace=False))
    return np.sort(np.concatenate(picked))


def scale_of(ctx: DemoContext) -> float:
    """Business size relative to a 1M-customer retailer (ad budgets, stock volumes)."""
    return ctx.population.size / 1_000_000
