"""What a message knows about its person: one engine query for the whole batch.

`context_sql` joins, for every requested person at once, the portrait (`person_traits`:
name, gender, member level, city, favourite category), their store, their coupon for the
campaign (`coupons`) and the products to show: their rows of `recommendations` (when the
table exists, in the template's kinds) topped up with the catalogue's popular products
or new arrivals — first in the person's favourite category, then overall — with names
and prices from `products`. The result has one row per person and product slot;
`person_contexts` turns those rows into the plain dicts the sandbox renders, adding what
is language work rather than data work (honorifics, pinyin, dates, price text).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from jingzhun.activation.content_templates import ContentSettings, MessageTemplate, ProductSource
from jingzhun.activation.coupons import discount_label, money_text
from jingzhun.activation.person_batch import lit

POPULAR_DAYS = 90
COMPOUND_SURNAMES = frozenset({"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐",
                               "司徒", "夏侯", "轩辕", "长孙", "宇文", "澹台", "万俟", "独孤", "南宫", "西门"})
# Surnames read differently from the character's common reading.
SURNAME_PINYIN = {"曾": "Zeng", "单": "Shan", "解": "Xie", "区": "Ou", "仇": "Qiu", "朴": "Piao", "查": "Zha",
                  "盖": "Ge", "乐": "Yue", "覃": "Qin", "翟": "Zhai", "缪": "Miao", "秘": "Bi", "种": "Chong",
                  "尉迟": "Yuchi", "万俟": "Moqi", "长孙": "Zhangsun", "召": "Shao", "员": "Yun", "繁": "Po"}
MEMBER_LEVELS_EN = {"钻石": "Diamond", "黑金": "Black Gold", "白金": "Platinum", "金卡": "Gold", "银卡": "Silver",
                    "普通": "Regular", "普卡": "Regular"}
CATEGORY_NAMES = {"apparel": ("服饰", "apparel"), "cosmetics": ("美妆", "cosmetics"),
                  "beauty_tools": ("美容工具", "beauty tools"), "home": ("家居", "home"), "shoes": ("鞋履", "shoes"),
                  "bags": ("箱包", "bags"), "food": ("食品", "food"), "electronics": ("数码", "electronics")}
UNSUBSCRIBE = {
    "sms": ("回T退订", "Reply T to opt out"),
    "app_push": ("可在 App「设置 - 消息通知」中关闭推送", "Turn these off in the app under Settings > Notifications"),
    "wechat": ("可在公众号「消息设置」中关闭此类提醒", "Turn these off in the official account's message settings"),
    "email": ("如不想再收到此类邮件，请回复“退订”", "To stop these e-mails, reply \"unsubscribe\""),
}


# ---- the query --------------------------------------------------------------------------------


def context_sql(template: MessageTemplate, persons: str, campaign_id: str | None, has_recommendations: bool) -> str:
    """One row per (person, product slot) for everyone in `persons` (DuckDB dialect, runs on Spark)."""
    wanted = f"wanted AS (SELECT DISTINCT person_id FROM {persons} AS given)"
    stores = ("stores_by_id AS (SELECT store_id, MIN(name) AS name, MIN(city) AS city FROM stores GROUP BY store_id),\n"
              "stores_by_name AS (SELECT name, MIN(store_id) AS store_id, MIN(city) AS city FROM stores GROUP BY name)")
    ctes = [wanted, stores, *_product_ctes(template.products, has_recommendations)]
    coupon = (f"LEFT JOIN coupons AS cp ON cp.campaign_id = {lit(campaign_id)} AND cp.person_id = w.person_id"
              if campaign_id else
              "LEFT JOIN (SELECT * FROM coupons WHERE 1 = 0) AS cp ON cp.person_id = w.person_id")
    products = (f"LEFT JOIN picked AS pk ON pk.person_id = w.person_id AND pk.slot <= {template.products.count}\n"
                "LEFT JOIN catalog AS c ON c.product_id = pk.product_id") if _wants_products(template.products) else ""
    product_columns = ("pk.slot, pk.product_id, c.name AS product_name, c.price, c.currency, c.category, "
                       "pk.reason_zh, pk.reason_en") if products else \
        ("CAST(NULL AS INTEGER) AS slot, CAST(NULL AS VARCHAR) AS product_id, CAST(NULL AS VARCHAR) AS product_name, "
         "CAST(NULL AS DECIMAL(18, 2)) AS price, CAST(NULL AS VARCHAR) AS currency, CAST(NULL AS VARCHAR) AS category, "
         "CAST(NULL AS VARCHAR) AS reason_zh, CAST(NULL AS VARCHAR) AS reason_en")
    joined = ",\n".join(ctes)
    return f"""
WITH {joined}
SELECT w.person_id, pt.person_id IS NOT NULL AS known, pt.name, pt.gender, pt.member_level, pt.city,
       pt.province, pt.favourite_category,
       COALESCE(si.store_id, sn.store_id) AS store_id, COALESCE(si.name, sn.name) AS store_name,
       COALESCE(si.city, sn.city) AS store_city,
       cp.code AS coupon_code, cp.name_zh AS coupon_name_zh, cp.name_en AS coupon_name_en,
       cp.discount_type, cp.discount_value, cp.min_spend, cp.currency AS coupon_currency,
       cp.valid_from, cp.valid_to,
       {product_columns}
FROM wanted AS w
LEFT JOIN person_traits AS pt ON pt.person_id = w.person_id
LEFT JOIN stores_by_id AS si ON si.store_id = pt.preferred_store_id
LEFT JOIN stores_by_name AS sn ON sn.name = pt.register_store
{coupon}
{products}
ORDER BY w.person_id, slot"""


def _wants_products(source: ProductSource) -> bool:
    return source.source != "none" and source.count > 0


def _product_ctes(source: ProductSource, has_recommendations: bool) -> list[str]:
    """catalog, ranked fallback, candidates, picked: the products each person is shown."""
    if not _wants_products(source):
        return []
    newest = source.source == "new_arrivals" or (source.source == "recommendations" and "new_arrival" in source.kinds
                                                 and len(source.kinds) == 1)
    order = "c.launch_date DESC, COALESCE(s.units, 0) DESC" if newest else "COALESCE(s.units, 0) DESC, c.launch_date DESC"
    only_launched = "WHERE c.launch_date <= CAST((SELECT MAX(placed_at) FROM orders) AS DATE)" if newest else ""
    n = source.count
    candidates = [
        f"SELECT pe.person_id, r.product_id, 1 AS tier, r.in_category AS position, {_no_reason()} "
        f"FROM people AS pe JOIN ranked AS r ON r.category = pe.favourite_category AND r.in_category <= {n}",
        f"SELECT pe.person_id, r.product_id, 2 AS tier, r.overall AS position, {_no_reason()} "
        f"FROM people AS pe CROSS JOIN ranked AS r WHERE r.overall <= {n}",
    ]
    if source.source == "recommendations" and has_recommendations:
        candidates.insert(0, _recommended_sql(source))
    return [
        "catalog AS (\n  SELECT product_id,\n"
        "         CASE WHEN COUNT(DISTINCT name) > 1 THEN REGEXP_REPLACE(MIN(name), '\\s+\\S+$', '') ELSE MIN(name) END AS name,\n"
        "         MIN(price) AS price, MIN(currency) AS currency, MIN(category) AS category, MAX(launch_date) AS launch_date\n"
        "  FROM products WHERE product_id IS NOT NULL GROUP BY product_id)",
        "sales AS (\n  SELECT i.product_id, SUM(i.quantity) AS units FROM order_items AS i JOIN orders AS o ON o.order_id = i.order_id\n"
        "  WHERE o.status NOT IN ('cancelled', 'refunded')\n"
        f"    AND o.placed_at >= (SELECT MAX(placed_at) FROM orders) - INTERVAL {POPULAR_DAYS} DAY\n"
        "  GROUP BY i.product_id)",
        "ranked AS (\n  SELECT c.product_id, c.category,\n"
        f"         ROW_NUMBER() OVER (PARTITION BY c.category ORDER BY {order}, c.product_id) AS in_category,\n"
        f"         ROW_NUMBER() OVER (ORDER BY {order}, c.product_id) AS overall\n"
        f"  FROM catalog AS c LEFT JOIN sales AS s ON s.product_id = c.product_id {only_launched})",
        "people AS (SELECT w.person_id, pt.favourite_category FROM wanted AS w "
        "LEFT JOIN person_traits AS pt ON pt.person_id = w.person_id)",
        "candidates AS (\n  " + "\n  UNION ALL\n  ".join(candidates) + ")",
        "deduped AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_id, product_id ORDER BY tier, position) AS copy "
        "FROM candidates)",
        "picked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY tier, position, product_id) AS slot "
        "FROM deduped WHERE copy = 1)",
    ]


def _no_reason() -> str:
    return "CAST(NULL AS VARCHAR) AS reason_zh, CAST(NULL AS VARCHAR) AS reason_en"


def _recommended_sql(source: ProductSource) -> str:
    """The person's own recommendations, kinds in the template's order, then by rank."""
    if source.kinds:
        order = " ".join(f"WHEN {lit(kind)} THEN {index}" for index, kind in enumerate(source.kinds))
        kind_order, only = f"CASE r.kind {order} END", f"WHERE r.kind IN ({', '.join(lit(k) for k in source.kinds)})"
    else:
        kind_order, only = "0", ""
    return (f"SELECT r.person_id, r.product_id, 0 AS tier, {kind_order} * 1000 + r.rank AS position, "
            f"r.reason_zh, r.reason_en FROM recommendations AS r JOIN wanted AS w ON w.person_id = r.person_id {only}")


# ---- rows to contexts ---------------------------------------------------------------------------


def person_contexts(rows: list[dict], language: str, channel: str, settings: ContentSettings,
                    timezone: str, now: datetime) -> Iterator[tuple[dict, list[str]]]:
    """(context, product ids) per person, from the query's rows (ordered by person, slot)."""
    current: list[dict] = []
    for row in rows:
        if current and row["person_id"] != current[0]["person_id"]:
            yield _context(current, language, channel, settings, timezone, now)
            current = []
        current.append(row)
    if current:
        yield _context(current, language, channel, settings, timezone, now)


def _context(rows: list[dict], language: str, channel: str, settings: ContentSettings,
             timezone: str, now: datetime) -> tuple[dict, list[str]]:
    first = rows[0]
    site = settings.site_url or ""
    products = [_product(row, language, site) for row in rows if row["product_id"] is not None]
    zh = language == "zh"
    brand = settings.brand.zh if settings.brand and zh else settings.brand.en if settings.brand else ""
    context = {
        "person": person_fields(first, language), "products": products,
        "product": products[0] if products else None,
        "coupon": coupon_fields(first, language, timezone, now) if first["coupon_code"] else None,
        "store": ({"id": first["store_id"], "name": first["store_name"], "city": first["store_city"]}
                  if first["store_id"] else None),
        "brand": brand, "site_url": site, "channel": channel, "language": language,
        "unsubscribe": unsubscribe_text(channel, language, settings),
        "today": local_date_text(now, timezone, language, now),
    }
    return context, [product["id"] for product in products]


def unsubscribe_text(channel: str, language: str, settings: ContentSettings) -> str:
    zh, en = UNSUBSCRIBE[channel]
    if channel == "email" and settings.unsubscribe_url:
        zh, en = f"如不想再收到此类邮件，请点此退订：{settings.unsubscribe_url}", f"Unsubscribe: {settings.unsubscribe_url}"
    return zh if language == "zh" else en


def _product(row: dict, language: str, site: str) -> dict:
    category = row["category"]
    names = CATEGORY_NAMES.get(category or "", (category or "", category or ""))
    price = row["price"]
    return {
        "id": row["product_id"], "name": row["product_name"] or row["product_id"],
        "price": float(price) if price is not None else None,
        "price_text": money_text(price, row["currency"] or "CNY") if price is not None else "",
        "category": category, "category_name": names[0] if language == "zh" else names[1],
        "reason": (row["reason_zh"] if language == "zh" else row["reason_en"]) or "",
        "url": f"{site.rstrip('/')}/product/{row['product_id']}" if site else "",
    }


def person_fields(row: dict, language: str) -> dict:
    """Name, surname, how to address them and where they live, in the message's language."""
    name = (row.get("name") or "").strip()
    surname = split_surname(name)
    gender = row.get("gender")
    level = row.get("member_level")
    if language == "zh":
        honorific = {"F": "女士", "M": "先生"}.get(gender or "", "")
        greeting = f"{surname}{honorific}" if surname and honorific else name or ("亲爱的会员" if level else "亲爱的顾客")
        city = row.get("city") or ""
    else:
        honorific = {"F": "Ms.", "M": "Mr."}.get(gender or "", "")
        latin_surname = surname_pinyin(surname) if surname else ""
        full = f"{latin_surname} {given_pinyin(name[len(surname):])}".strip() if name else ""
        greeting = (f"{honorific} {latin_surname}" if latin_surname and honorific
                    else full or ("valued member" if level else "valued customer"))
        city, level = place_pinyin(row.get("city") or ""), MEMBER_LEVELS_EN.get(level or "", level)
    return {"id": row["person_id"], "name": name, "surname": surname, "greeting": greeting, "honorific": honorific,
            "gender": gender or "", "member_level": level or "", "city": city,
            "province": row.get("province") or "", "favourite_category": row.get("favourite_category") or ""}


def coupon_fields(row: dict, language: str, timezone: str, now: datetime) -> dict:
    """The coupon as a message shows it: code, name, discount, and the last valid day."""
    currency = row["coupon_currency"] or "CNY"
    name = row["coupon_name_zh"] if language == "zh" else row["coupon_name_en"]
    last_instant = row["valid_to"] - timedelta(microseconds=1)
    return {
        "code": row["coupon_code"], "name": name,
        "discount": discount_label(row["discount_type"], row["discount_value"], row["min_spend"] or 0, language, currency),
        "min_spend": money_text(row["min_spend"] or 0, currency),
        "valid_from": local_date_text(row["valid_from"], timezone, language, now),
        "valid_until": local_date_text(last_instant, timezone, language, now),
        "expires_at": f"{last_instant.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}",
        "preview": bool(row.get("coupon_preview")),
    }


def local_date_text(instant: datetime, timezone: str, language: str, now: datetime) -> str:
    """10月31日 / Oct 31 (with the year when it is not this year's)."""
    day = instant.astimezone(ZoneInfo(timezone)).date()
    this_year = day.year == now.astimezone(ZoneInfo(timezone)).year
    if language == "zh":
        return f"{day.month}月{day.day}日" if this_year else f"{day.year}年{day.month}月{day.day}日"
    text = f"{day:%b} {day.day}"
    return text if this_year else f"{text}, {day.year}"


def split_surname(name: str) -> str:
    """The surname of a Chinese name: two characters for 欧阳, 司马 …, else the first.

    Example:
        >>> split_surname("欧阳娜娜"), split_surname("林嘉"), split_surname("")
        ('欧阳', '林', '')
    """
    if not name or not ("\u4e00" <= name[0] <= "\u9fff"):
        return name.split()[-1] if name.split() else ""
    return name[:2] if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else name[:1]


@lru_cache(maxsize=4096)
def surname_pinyin(surname: str) -> str:
    """Lin, Ouyang, Zeng: the surname as an English message writes it."""
    if surname in SURNAME_PINYIN:
        return SURNAME_PINYIN[surname]
    return _pinyin(surname)


@lru_cache(maxsize=4096)
def given_pinyin(given: str) -> str:
    return _pinyin(given)


@lru_cache(maxsize=1024)
def place_pinyin(place: str) -> str:
    """深圳市 -> Shenzhen: a city as an English message writes it."""
    core = place.removesuffix("市").removesuffix("省") if len(place) > 2 else place
    return _pinyin(core) if core else ""


def _pinyin(text: str) -> str:
    """王静怡 -> Wangjingyi: toneless pinyin run together, capitalized."""
    from pypinyin import Style, lazy_pinyin  # 0.5 s of phrase tables: loaded when first used

    return "".join(lazy_pinyin(text, style=Style.NORMAL)).capitalize()
