"""The product catalogue: products (SPU, `product_id`) with 1-4 SKUs each.

Names, prices and launch dates look like a mid-priced Chinese omnichannel
retailer's: house brands across apparel, cosmetics, beauty tools and home. Two
products are designated for planted patterns: the livestream spike item (a
product launched days before `spike_date`) and the fans-vs-buyers product line
(`FANS_PRODUCT_LINE`), whose buyers skew young while its social fans are 30-39.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from jingzhun.demo.calendar import holiday_dates
from jingzhun.demo.context import Catalog
from jingzhun.demo.vectors import concat, digit_strings, ean13, stream_rng, take

FANS_PRODUCT_LINE = "水光润泽系列"
"""Product line of the fans-vs-buyers pattern: buyers mostly under 30 (planted in
commerce), social fans mostly 30-39 (planted by marketing.py)."""

SPIKE_LEAD_DAYS = 9  # the spike item launches this many days before the livestream
GS1_COMPANY_PREFIX = 6975432  # a China (69x) GS1 company prefix for our barcodes


@dataclass(frozen=True)
class Subcategory:
    category: str
    code: str
    zh: str
    price_lo: float
    price_hi: float
    products: int
    consumable: bool
    variants: tuple[str, ...]


SUBCATEGORIES: tuple[Subcategory, ...] = (
    Subcategory("apparel", "dress", "连衣裙", 199, 899, 28, False, ("S", "M", "L", "XL")),
    Subcategory("apparel", "t_shirt", "T恤", 79, 259, 26, False, ("S", "M", "L", "XL")),
    Subcategory("apparel", "shirt", "衬衫", 149, 499, 18, False, ("S", "M", "L")),
    Subcategory("apparel", "knitwear", "针织衫", 199, 699, 16, False, ("S", "M", "L")),
    Subcategory("apparel", "coat", "外套", 399, 1599, 16, False, ("S", "M", "L", "XL")),
    Subcategory("apparel", "jeans", "牛仔裤", 199, 599, 14, False, ("26", "27", "28", "29")),
    Subcategory("apparel", "skirt", "半身裙", 159, 499, 14, False, ("S", "M", "L")),
    Subcategory("apparel", "sportswear", "运动套装", 259, 799, 12, False, ("S", "M", "L")),
    Subcategory("cosmetics", "foundation", "粉底液", 159, 499, 14, True,
                ("#01象牙白", "#02自然色", "#03小麦色")),
    Subcategory("cosmetics", "cushion", "气垫", 139, 399, 8, True, ("#01", "#02")),
    Subcategory("cosmetics", "lipstick", "口红", 99, 329, 22, True,
                ("#101正红", "#202豆沙", "#303枫叶", "#404奶茶")),
    Subcategory("cosmetics", "serum", "精华液", 199, 899, 14, True, ("30ml", "50ml")),
    Subcategory("cosmetics", "moisturizer", "面霜", 159, 699, 12, True, ("50g",)),
    Subcategory("cosmetics", "cleanser", "洁面乳", 59, 169, 10, True, ("100g",)),
    Subcategory("cosmetics", "toner", "爽肤水", 99, 299, 10, True, ("150ml",)),
    Subcategory("cosmetics", "sunscreen", "防晒霜", 99, 259, 8, True, ("40ml",)),
    Subcategory("cosmetics", "facial_mask", "面膜", 69, 199, 12, True, ("5片装", "10片装")),
    Subcategory("cosmetics", "eyeshadow", "眼影盘", 129, 359, 10, True, ("大地色", "玫瑰色")),
    Subcategory("cosmetics", "perfume", "香水", 299, 999, 8, True, ("30ml", "50ml")),
    Subcategory("beauty_tools", "beauty_sponge", "美妆蛋", 29, 69, 8, True,
                ("单只装", "三只装")),
    Subcategory("beauty_tools", "makeup_brush", "化妆刷", 49, 299, 10, False, ("单支", "套装")),
    Subcategory("beauty_tools", "eyelash_curler", "睫毛夹", 39, 129, 5, False, ("标准",)),
    Subcategory("beauty_tools", "facial_device", "美容仪", 599, 2999, 6, False, ("标准",)),
    Subcategory("beauty_tools", "hair_dryer", "吹风机", 299, 1299, 5, False, ("白色", "粉色")),
    Subcategory("home", "towel", "毛巾", 39, 129, 12, True, ("白色", "灰色", "粉色")),
    Subcategory("home", "bedding", "四件套", 299, 1299, 14, False, ("1.5米", "1.8米")),
    Subcategory("home", "aroma_candle", "香薰蜡烛", 89, 299, 10, True, ("小号", "大号")),
    Subcategory("home", "storage", "收纳盒", 49, 199, 10, False, ("小号", "中号", "大号")),
    Subcategory("home", "tableware", "餐具套装", 99, 599, 12, False, ("4件", "8件")),
    Subcategory("home", "diffuser", "无火香薰", 99, 329, 8, True, ("100ml", "200ml")),
    Subcategory("home", "slippers", "家居拖鞋", 39, 129, 8, False, ("36-37", "38-39", "40-41")),
)

BRANDS = {
    "apparel": (("素野", ("都市通勤系列", "轻运动系列")), ("绒语", ("新中式系列", "法式复古系列"))),
    "cosmetics": (("玉肌", (FANS_PRODUCT_LINE, "焕颜修护系列")), ("柔雾", ("哑光持妆系列",
                                                                      "奶油光泽系列"))),
    "beauty_tools": (("妆匠", ("专业工具系列", "入门工具系列")),),
    "home": (("栖木", ("棉麻栖居系列", "木语香氛系列")), ("简屋", ("简约日常系列",))),
}
_STYLE_WORDS = ("经典", "轻盈", "丝滑", "柔软", "清透", "奢宠", "元气", "静谧", "臻选", "云朵",
                "晨曦", "月光", "星空", "花漾", "森系", "氧气")


def build_catalog(seed: int, start: date, end: date) -> Catalog:
    """Products and SKUs with valid EAN-13 barcodes and a designated spike item.

    Args:
        seed: master seed.
        start, end: the simulated period; launch dates spread over 2019..end and
            the spike item launches `SPIKE_LEAD_DAYS` before `spike_date(start, end)`.
    """
    rng = stream_rng(seed, "catalog")
    spu = _products(rng, start, end)
    counts = np.array([min(len(v), 1 + int(rng.integers(0, 4))) for v in spu["variants"]])
    counts[spu["is_spike"]] = 1
    sku_spu = np.repeat(np.arange(len(counts)), counts)
    variant_no = np.arange(len(sku_spu)) - np.repeat(np.cumsum(counts) - counts, counts)
    variant = np.array([spu["variants"][i][k] for i, k in zip(sku_spu, variant_no, strict=True)],
                       dtype=object)  # per SKU (~900), not per person
    cols = {key: spu[key][sku_spu] for key in ("product_id", "brand", "category", "subcategory",
                                                "product_line", "base_name", "launch_date",
                                                "is_consumable", "popularity", "is_spike")}
    cols.update(_sku_columns(rng, cols, variant, spu["price"][sku_spu]))
    return Catalog(size=len(sku_spu), columns=cols)


def _products(rng: np.random.Generator, start: date, end: date) -> dict[str, np.ndarray]:
    """One row per product (SPU), over the subcategory table (~400 products)."""
    rows = []
    for sub in SUBCATEGORIES:  # ~30 subcategories, not rows of data
        brands = BRANDS[sub.category]
        perm = rng.permutation(len(_STYLE_WORDS))
        for k in range(sub.products):
            brand, lines = brands[k % len(brands)]
            line = lines[(k // len(brands)) % len(lines)]
            word = _style_word(perm, k)
            price = np.exp(rng.uniform(np.log(sub.price_lo), np.log(sub.price_hi)))
            rows.append((sub, brand, line, f"{brand}{line.removesuffix('系列')}{word}{sub.zh}",
                         np.floor(price / 10) * 10 + 9, (k + 1) ** -0.9))
    out = _columns_from_rows(rows)
    out["launch_date"] = _launch_dates(rng, len(rows), end)
    out["is_spike"] = _spike_flag(out, rng)
    out["launch_date"][out["is_spike"]] = np.datetime64(
        spike_date(start, end) - timedelta(days=SPIKE_LEAD_DAYS), "D")
    out["product_id"] = np.array([f"P{i + 100001:06d}" for i in range(len(rows))], dtype=object)
    return out


def _style_word(perm: np.ndarray, k: int) -> str:
    """Distinct style words within a subcategory: one word, then two-word combinations."""
    n = len(_STYLE_WORDS)
    first = _STYLE_WORDS[perm[k % n]]
    return first if k < n else first + _STYLE_WORDS[perm[(k * 7 + 3) % n]]


def _columns_from_rows(rows: list) -> dict[str, np.ndarray]:
    def col(values: list) -> np.ndarray:
        return np.array(values, dtype=object)

    return {
        "category": col([r[0].category for r in rows]),
        "subcategory": col([r[0].code for r in rows]),
        "is_consumable": np.array([r[0].consumable for r in rows]),
        "variants": [r[0].variants for r in rows],
        "brand": col([r[1] for r in rows]), "product_line": col([r[2] for r in rows]),
        "base_name": col([r[3] for r in rows]),
        "price": np.array([r[4] for r in rows]), "popularity": np.array([r[5] for r in rows]),
    }


def _launch_dates(rng: np.random.Generator, n: int, end: date) -> np.ndarray:
    """Most products are older than the period; about a quarter launch during it."""
    lo = np.datetime64("2019-03-01", "D")
    span = (np.datetime64(end, "D") - lo).astype(int) - 30
    return lo + (rng.random(n) ** 0.6 * span).astype(np.int64)


def _spike_flag(out: dict, rng: np.random.Generator) -> np.ndarray:
    """The livestream item: a mid-priced apparel dress from the 素野 brand, tail popularity."""
    candidates = np.flatnonzero((out["subcategory"] == "dress") & (out["popularity"] < 0.2))
    flag = np.zeros(len(out["price"]), dtype=bool)
    flag[candidates[int(rng.integers(len(candidates)))]] = True
    return flag


def _sku_columns(rng: np.random.Generator, cols: dict, variant: np.ndarray,
                 price: np.ndarray) -> dict:
    """SKU code, barcode, full name, price (size/volume changes price a little) and cost."""
    n = len(variant)
    bump = np.where(np.char.find(variant.astype(str), "50ml") >= 0, 1.5, 1.0)
    bump = np.where(np.char.find(variant.astype(str), "套装") >= 0, 2.5, bump)
    sku_price = np.round(np.floor(price * bump / 10) * 10 + 9, 2)
    margin = np.where(cols["category"] == "cosmetics", rng.uniform(0.18, 0.35, n),
                      rng.uniform(0.35, 0.6, n))
    return {
        "sku": concat("SKU-", digit_strings(np.arange(n) + 200001, 6)),
        "barcode": ean13(GS1_COMPANY_PREFIX * 10**5 + 10000 + np.arange(n) * 7 % 90000),
        "name": concat(take(cols["base_name"], np.arange(n)), " ", take(variant, np.arange(n))),
        "price": sku_price,
        "cost": np.round(sku_price * margin, 2),
        "variant": variant,
    }


def spike_date(start: date, end: date) -> date:
    """The livestream day: ~45% into the period, moved off holiday windows (±10 days)
    and off the monthly member day (24th-26th) so no other pattern overlaps it."""
    day = start + timedelta(days=int((end - start).days * 0.45))
    holidays = holiday_dates(start, end)
    while any(abs((day - h).days) <= 10 for h in holidays) or 24 <= day.day <= 26:
        day += timedelta(days=1)
    return day


def catalog_table(catalog: Catalog) -> pa.Table:
    """The catalogue as an Arrow table with the contract's columns, for writing and joins."""
    names = ("product_id", "sku", "barcode", "name", "brand", "category", "subcategory",
             "product_line", "price", "cost", "launch_date", "is_consumable")
    return pa.table({k: pa.array(catalog[k]) if not isinstance(catalog[k], pa.Array)
                     else catalog[k] for k in names})
