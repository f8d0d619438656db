"""The CRM member export: crm/members.xlsx, as a 会员系统 exports it for the marketing team.

Some people registered twice (a second member id, often with a mistyped name or a
new phone), names carry 同音字 typos, phones are typed in many formats, and a few
rows are broken. A duplicate registered under a new phone keeps its birthday on both
records (the second sign-up asks for it, for the 生日礼): without a phone or a birthday
in common, two cards with one name in one city are a namesake as often as a
duplicate, and no matcher, human or Splink, can tell which. The duplicates are shared with the POS export (a duplicate's
second card shows up on receipts) through `duplicates_of`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import xlsxwriter

from jingzhun.demo.context import DemoContext, DemoFile
from jingzhun.demo.dirty import bad_dates, bad_phones, format_phones, mojibake, name_typos
from jingzhun.demo.sessions import signup_channels
from jingzhun.demo.vectors import concat, digit_strings, take, where

DUPLICATE_SHARE = 0.025  # of members registered a second time under a new member id
DUPLICATE_NEW_PHONE = 0.30  # of duplicates registered with a different (second) phone
DUPLICATE_NAME_TYPO = 0.40  # of duplicates whose second record has a mistyped name
NAME_TYPO_RATE = 0.03  # of primary CRM records with a mistyped name
BIRTHDAY_MISSING = 0.08
CRM_MALFORMED = {"bad_phone": 0.005, "bad_date": 0.003, "mojibake": 0.002}
HEADERS = ("会员编号", "姓名", "手机号", "性别", "生日", "省份", "城市", "会员等级", "注册时间",
           "注册门店", "微信openid", "微信unionid", "邮箱")
ONLINE_REGISTRATION = ("官方商城", "精准APP", "微信小程序")
SHEET_ROWS = 1_048_575  # Excel's 1,048,576 rows minus the header
BACKGROUND_MIN_ROWS = 50_000  # below this, starting a worker process costs more than it saves


def duplicates_of(ctx: DemoContext) -> dict[str, pa.Array | np.ndarray]:
    """Who registered twice, with the second record's id, phone, name and date (cached)."""
    if "crm_duplicates" in ctx.shared:
        return ctx.shared["crm_duplicates"]  # type: ignore[return-value]
    rng = ctx.rng("crm.duplicates")
    pop = ctx.population
    members = np.flatnonzero(np.asarray(pop["member_id"].is_valid()))
    person = np.sort(rng.choice(members, int(len(members) * DUPLICATE_SHARE), replace=False))
    k = len(person)
    new_phone = rng.random(k) < DUPLICATE_NEW_PHONE
    # 147 numbers (data-card range) are never drawn as primary phones: no collisions.
    second = digit_strings(14_700_000_000 + np.arange(k) * 97 % 10**8, 11)
    name = take(pop["name"], person)
    typo = rng.random(k) < DUPLICATE_NAME_TYPO
    ids = concat("JZ", digit_strings(190_000_001 + np.arange(k), 9))
    by_person = np.full(pop.size, None, dtype=object)
    by_person[person] = ids.to_numpy(zero_copy_only=False)
    signup = np.minimum(pop["signup_date"][person] + rng.integers(30, 400, k),
                        np.datetime64(ctx.end, "D"))
    dup = {"person": person, "member_id": ids, "member_id_by_person": pa.array(by_person),
           "phone": where(new_phone, second, take(pop["phone"], person)),
           "new_phone": new_phone, "name": where(typo, name_typos(rng, name), name),
           "signup_date": signup}
    ctx.shared["crm_duplicates"] = dup
    return dup


def write_crm_sources(ctx: DemoContext) -> list[DemoFile]:
    """crm/members.xlsx: every member once, duplicates a second time, sorted by 注册时间."""
    table, kind = crm_table(ctx)
    path = ctx.data_dir / "crm" / "members.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ctx.shared.get("background") and table.num_rows >= BACKGROUND_MIN_ROWS:
        # xlsxwriter is pure Python (~6 us per cell); a second process writes the
        # workbook while this one renders the event logs.
        ctx.shared.setdefault("background_jobs", []).append(  # type: ignore[union-attr]
            XlsxJob(path, table, _created(ctx)))
    else:
        write_xlsx(path, table, _created(ctx))
    ctx.report("crm", table.num_rows, table.num_rows)
    return [DemoFile("crm_members", path, table.num_rows, int((kind > 0).sum()),
                     encoding="xlsx", description="CRM member export (Excel)")]


def crm_table(ctx: DemoContext) -> tuple[pa.Table, np.ndarray]:
    """The member rows (primary then duplicate records, sorted by registration time)."""
    rng = ctx.rng("crm.rows")
    primary = _primary_rows(ctx, rng)
    second = _duplicate_rows(ctx, rng)
    table = pa.concat_tables([primary, second])
    table = table.take(pa.array(np.argsort(table["_reg_s"].to_numpy(), kind="stable")))
    return _corrupt(ctx, table)


def _primary_rows(ctx: DemoContext, rng: np.random.Generator) -> pa.Table:
    pop = ctx.population
    person = np.flatnonzero(np.asarray(pop["member_id"].is_valid()))
    name = take(pop["name"], person)
    typo = rng.random(len(person)) < NAME_TYPO_RATE
    dup = duplicates_of(ctx)
    birthday_kept = np.isin(person, dup["person"][dup["new_phone"]])
    return _rows(ctx, rng, person, take(pop["member_id"], person),
                 where(typo, name_typos(rng, name), name), take(pop["phone"], person),
                 pop["signup_date"][person], birthday_kept)


def _duplicate_rows(ctx: DemoContext, rng: np.random.Generator) -> pa.Table:
    dup = duplicates_of(ctx)
    return _rows(ctx, rng, dup["person"], dup["member_id"], dup["name"], dup["phone"],
                 dup["signup_date"], dup["new_phone"], second=True)


def _rows(ctx: DemoContext, rng: np.random.Generator, person: np.ndarray, member_id: pa.Array,
          name: pa.Array, phone: pa.Array, signup: np.ndarray, birthday_kept: np.ndarray,
          second: bool = False) -> pa.Table:
    """CRM columns for the given persons; second records register elsewhere, no WeChat.

    `birthday_kept` marks rows whose birthday is never left blank (both records of a
    duplicate with a new phone)."""
    pop = ctx.population
    n = len(person)
    channel = signup_channels(ctx)[person]
    if second:
        channel = (channel + 1 + rng.integers(0, 3, n)) % 4
    store_name = take(ctx.stores["name"], _store_index(ctx, rng, person))
    reg_where = pc.if_else(pa.array(channel == 3), store_name,
                           take(np.array(ONLINE_REGISTRATION, dtype=object),
                                np.clip(channel, 0, 2)))
    hour = np.where(channel == 3, rng.uniform(10, 21.9, n), rng.uniform(7, 23.9, n))
    reg_s = ((signup - np.datetime64("1970-01-01", "D")).astype(np.int64) * 86400
             + (hour * 3600).astype(np.int64))
    birth = np.where((rng.random(n) < BIRTHDAY_MISSING) & ~birthday_kept, np.datetime64("NaT"),
                     pop["birth_date"][person])
    wechat = (channel == 2) | (rng.random(n) < 0.5)
    return pa.table({
        "member_id": member_id, "name": name, "phone": format_phones(rng, phone),
        "gender": pa.array(np.where(pop["gender"][person] == "F", "女", "男")),
        "birth_excel": pa.array(_excel_days(birth)), "province": take(pop["province"], person),
        "city": take(pop["city"], person), "level": take(pop["member_level"], person),
        "_reg_s": pa.array(reg_s), "reg_where": reg_where,
        "openid": where(wechat & (not second), take(pop["wechat_openid"], person), None),
        "unionid": where(wechat & (not second), take(pop["wechat_unionid"], person), None),
        "email": where(np.full(n, not second), take(pop["email"], person), None),
    })


def _store_index(ctx: DemoContext, rng: np.random.Generator, person: np.ndarray) -> np.ndarray:
    home = pa.array(ctx.population["home_store_id"][person], type=pa.string())
    idx = pc.index_in(home, value_set=ctx.stores["store_id"]).to_numpy(zero_copy_only=False)
    idx = idx.astype(float)
    return np.where(np.isnan(idx), rng.integers(0, ctx.stores.num_rows, len(person)),
                    np.nan_to_num(idx)).astype(np.int64)


def _excel_days(days: np.ndarray) -> np.ndarray:
    """datetime64[D] to Excel serial day numbers (1900 system), NaN where missing."""
    serial = (days - np.datetime64("1899-12-30", "D")).astype("timedelta64[D]")
    return np.where(np.isnat(days), np.nan, serial.astype(np.float64))


def _corrupt(ctx: DemoContext, table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Bad phones, unparseable birthdays (as text) and mojibake names, disjoint rows."""
    rng = ctx.rng("crm.malformed")
    n = table.num_rows
    p = list(CRM_MALFORMED.values())
    kind = rng.choice(len(p) + 1, size=n, p=[1 - sum(p), *p])
    phone = where(kind == 1, bad_phones(rng, take(ctx.population["phone"], rng.integers(
        0, ctx.population.size, n))), table["phone"].combine_chunks())
    birth_text = where(kind == 2, bad_dates(rng, n), None)
    names = table["name"].combine_chunks()
    bad = np.flatnonzero(kind == 3)
    if len(bad):
        names = pc.replace_with_mask(names, pa.array(kind == 3),
                                     mojibake(names.take(pa.array(bad)), "cp1252"))
    table = table.set_column(table.schema.get_field_index("phone"), "phone", phone)
    table = table.set_column(table.schema.get_field_index("name"), "name", names)
    return table.append_column("birth_text", birth_text), kind


def write_xlsx(path: Path, table: pa.Table, created: datetime) -> None:
    """Stream rows through xlsxwriter's constant-memory mode, spilling past Excel's limit.

    xlsxwriter needs one call per cell; this is the one per-row loop of the
    generator, and it writes straight from column lists (no per-cell conversion).
    """
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True,
                                         "default_date_format": "yyyy-mm-dd"})
    wb.set_properties({"created": created})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    time_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    cols = _xlsx_columns(table)
    n = table.num_rows
    for sheet_no, lo in enumerate(range(0, max(n, 1), SHEET_ROWS)):
        ws = wb.add_worksheet("会员" if sheet_no == 0 else f"会员{sheet_no + 1}")
        ws.write_row(0, 0, HEADERS)
        _write_sheet(ws, cols, lo, min(lo + SHEET_ROWS, n), date_fmt, time_fmt)
    wb.close()


def _created(ctx: DemoContext) -> datetime:
    """A fixed document date (the export day) so the same seed gives the same bytes."""
    return datetime(ctx.end.year, ctx.end.month, ctx.end.day, 23, 0, 0)


def _xlsx_columns(table: pa.Table) -> list[list]:
    """Python lists per output column, in HEADERS order (dates as Excel serials)."""
    reg = table["_reg_s"].to_numpy() / 86400.0 + 25569.0  # 1970-01-01 is Excel day 25569
    birth = table["birth_excel"].to_numpy(zero_copy_only=False)
    return [table["member_id"].to_pylist(), table["name"].to_pylist(),
            table["phone"].to_pylist(), table["gender"].to_pylist(),
            np.where(np.isnan(birth), -1.0, birth).tolist(), table["birth_text"].to_pylist(),
            table["province"].to_pylist(), table["city"].to_pylist(),
            table["level"].to_pylist(), reg.tolist(), table["reg_where"].to_pylist(),
            table["openid"].to_pylist(), table["unionid"].to_pylist(),
            table["email"].to_pylist()]


def _write_sheet(ws: xlsxwriter.worksheet.Worksheet, cols: list[list], lo: int, hi: int,
                 date_fmt: xlsxwriter.format.Format, time_fmt: xlsxwriter.format.Format
                 ) -> None:
    """Rows lo..hi-1 of the columns into the sheet, row 1 onwards."""
    (mid, name, phone, gender, birth, btext, prov, city, level, reg, reg_where, openid,
     unionid, email) = cols
    text, num = ws.write_string, ws.write_number
    for r in range(lo, hi):
        row = r - lo + 1
        text(row, 0, mid[r])
        text(row, 1, name[r])
        text(row, 2, phone[r])
        text(row, 3, gender[r])
        if btext[r] is not None:
            text(row, 4, btext[r])
        elif birth[r] >= 0:
            num(row, 4, birth[r], date_fmt)
        text(row, 5, prov[r])
        text(row, 6, city[r])
        text(row, 7, level[r])
        num(row, 8, reg[r], time_fmt)
        text(row, 9, reg_where[r])
        for c, values in ((10, openid), (11, unionid), (12, email)):
            if values[r] is not None:
                text(row, c, values[r])


class XlsxJob:
    """Writes members.xlsx in a child interpreter (`python -m jingzhun.demo.crm`).

    A plain subprocess rather than multiprocessing: forking a process that runs
    DuckDB threads can deadlock, and "spawn" re-imports the caller's __main__.
    The table travels as an Arrow IPC file in a temporary folder.
    """

    def __init__(self, path: Path, table: pa.Table, created: datetime) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="jingzhun-crm-")
        source = Path(self.tmp.name) / "members.arrow"
        with pa.OSFile(str(source), "wb") as f, ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        cmd = [sys.executable, "-m", "jingzhun.demo.crm", str(source), str(path),
               created.isoformat()]
        self.process = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)

    def cancel(self) -> None:
        """Stop the child (the run failed elsewhere) and remove the temporary table."""
        self.process.kill()
        self.process.communicate()
        self.tmp.cleanup()

    def result(self) -> None:
        """Wait for the child; raise with its error output if it failed."""
        _, err = self.process.communicate()
        self.tmp.cleanup()
        if self.process.returncode != 0:
            raise RuntimeError(f"writing members.xlsx failed (exit {self.process.returncode}):"
                               f" {err.decode(errors='replace')[-2000:]}")


def _main(argv: list[str]) -> None:
    source, path, created = argv
    with pa.memory_map(source) as f:
        table = ipc.open_file(f).read_all()
    write_xlsx(Path(path), table, datetime.fromisoformat(created))


if __name__ == "__main__":
    _main(sys.argv[1:])
