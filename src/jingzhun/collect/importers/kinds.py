"""What each import kind produces: SQL from the batch's valid rows to canonical tables.

The batch is registered as `rows` in an in-process DuckDB (used here as an Arrow
compute library, whichever engine stores the result): the mapping's fields, plus
`_line_no`, `_source_id`, `_imported_at`, `_currency` and, for kinds with
`group_by`, `_group_line` (the row's position in its group, in file order: a
receipt's line number). Each kind names its
primary table and the columns that identify a row there (for the anti-join that
makes re-imports add nothing), the SQL giving those key columns per source row,
and one SELECT per target table. A kind may also name lookups: small queries over
canonical tables, run on the workspace engine once per import and registered
beside `rows` (e.g. POS barcodes to product ids and SKUs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """An import kind: where its rows go and how a row is recognized as already loaded."""

    name: str
    primary: str
    key_columns: tuple[str, ...]
    key_sql: str  # SELECT-list over `rows` giving the key columns per source row
    targets: tuple[tuple[str, str], ...]
    check_sql: str | None = None  # extra row checks: (_row, code, field, reason)
    lookups: tuple[Lookup, ...] = ()


@dataclass(frozen=True)
class Lookup:
    """Reference data a kind's SQL joins: a portable query on the workspace engine."""

    name: str
    table: str  # the canonical table it reads (empty result when missing)
    sql: str
    columns: tuple[str, ...]


def _json_members(pairs: dict[str, str]) -> str:
    """SQL for the members of a JSON object {id_type: value}, skipping NULL values.

    Spelled out with concat_ws (which skips NULLs) rather than a filtered map:
    at a million rows the lambda costs as much as the rest of the query.
    """
    return "concat_ws(',', " + ", ".join(f"'\"{key}\":' || to_json(CAST({value} AS VARCHAR))"
                                         for key, value in pairs.items()) + ")"


def _identifiers(pairs: dict[str, str]) -> str:
    """SQL for a JSON object {id_type: value} holding only the non-empty identifiers ({} when none)."""
    return f"('{{' || {_json_members(pairs)} || '}}')"


def _buyer_identifiers(pairs: dict[str, str]) -> str:
    """An order's `customer_identifiers`: every buyer identifier given, NULL when none was."""
    return f"('{{' || nullif({_json_members(pairs)}, '') || '}}')"


def _phones(phone: str, masked: str) -> dict[str, str]:
    """A phone column as the identifier it is: E.164 `phone`, or weak `phone_masked`."""
    return {"phone": f"CASE WHEN NOT coalesce({masked}, false) THEN {phone} END",
            "phone_masked": f"CASE WHEN {masked} THEN {phone} END"}


def _attributes(names: list[str]) -> str:
    return "to_json({" + ", ".join(f"'{name}': {name}" for name in names) + "})"


_POS_ORDERS = f"""
SELECT order_id, first(_source_id) AS source_id, 'offline' AS channel, 'pos' AS platform,
  first(store_id) AS store_id,
  coalesce(first(member_id), first(phone)) AS customer_ref,
  CASE WHEN first(member_id) IS NOT NULL THEN 'member_id'
       WHEN bool_or(phone_masked) THEN 'phone_masked'
       WHEN first(phone) IS NOT NULL THEN 'phone' END AS customer_ref_type,
  min(placed_at) AS placed_at, min(placed_at) AS paid_at, 'completed' AS status,
  first(_currency) AS currency,
  CAST(sum(unit_price * quantity) AS DECIMAL(18, 2)) AS gross_amount,
  CAST(sum(unit_price * quantity) - sum(coalesce(amount, unit_price * quantity)) AS DECIMAL(18, 2)) AS discount_amount,
  CAST(sum(coalesce(amount, unit_price * quantity)) AS DECIMAL(18, 2)) AS net_amount,
  first(payment_method) AS payment_method, first(_imported_at) AS imported_at,
  {_buyer_identifiers({"member_id": "any_value(member_id)",
                       **{key: f"any_value({value})" for key, value in _phones("phone", "phone_masked").items()}})}
    AS customer_identifiers
FROM rows GROUP BY order_id
"""
_PRODUCT_OF_BARCODE = Lookup(
    "product_of_barcode", "products",
    "SELECT barcode, min_by(product_id, sku) AS product_id, min(sku) AS sku FROM products "
    "WHERE barcode IS NOT NULL GROUP BY barcode", ("barcode", "product_id", "sku"))
_POS_ITEMS = """
SELECT order_id, CAST(_group_line AS INTEGER) AS line_no,
  p.product_id, p.sku, barcode, CAST(quantity AS INTEGER) AS quantity, unit_price,
  CAST(unit_price * quantity - coalesce(amount, unit_price * quantity) AS DECIMAL(18, 2)) AS discount,
  CAST(coalesce(amount, unit_price * quantity) AS DECIMAL(18, 2)) AS amount, _currency AS currency
FROM rows LEFT JOIN product_of_barcode p USING (barcode)
"""
_ITEM_TYPE = ('[{"sku": "VARCHAR", "product_id": "VARCHAR", "quantity": "VARCHAR", '
              '"unit_price": "VARCHAR", "discount": "VARCHAR"}]')
_ONLINE_ITEMS = f"""
WITH unpacked AS (SELECT order_id, currency, from_json(items, '{_ITEM_TYPE}') AS list FROM rows)
SELECT order_id, CAST(unnest(range(1, len(list) + 1)) AS INTEGER) AS line_no, unnest(list) AS item, currency
FROM unpacked
"""
_ONLINE_ORDERS = f"""
WITH lines AS ({_ONLINE_ITEMS}),
totals AS (SELECT order_id,
  sum(TRY_CAST(item.quantity AS INTEGER) * TRY_CAST(item.unit_price AS DECIMAL(18, 2))) AS gross,
  sum(coalesce(TRY_CAST(item.discount AS DECIMAL(18, 2)), 0)) AS discount FROM lines GROUP BY order_id)
SELECT r.order_id, r._source_id AS source_id, 'online' AS channel, r.platform,
  coalesce(r.member_id, r.openid, r.buyer_open_uid, r.buyer_pin, r.douyin_user_id, r.receiver_phone) AS customer_ref,
  CASE WHEN r.member_id IS NOT NULL THEN 'member_id' WHEN r.openid IS NOT NULL THEN 'wechat_openid'
       WHEN r.buyer_open_uid IS NOT NULL THEN 'tmall_open_uid' WHEN r.buyer_pin IS NOT NULL THEN 'jd_pin'
       WHEN r.douyin_user_id IS NOT NULL THEN 'douyin_user_id'
       WHEN r.receiver_phone_masked THEN 'phone_masked' WHEN r.receiver_phone IS NOT NULL THEN 'phone' END
    AS customer_ref_type,
  r.placed_at, r.paid_at, r.status, r.currency, CAST(t.gross AS DECIMAL(18, 2)) AS gross_amount,
  CAST(t.discount AS DECIMAL(18, 2)) AS discount_amount,
  coalesce(r.total_amount, CAST(t.gross - t.discount AS DECIMAL(18, 2))) AS net_amount,
  r.coupon_code, r.shipping_province AS ship_province, r.shipping_city AS ship_city, r._imported_at AS imported_at,
  NULLIF(TRIM(r.receiver_name), '') AS receiver_name,
  {_buyer_identifiers({"member_id": "r.member_id", "wechat_openid": "r.openid", "tmall_open_uid": "r.buyer_open_uid",
                       "jd_pin": "r.buyer_pin", "douyin_user_id": "r.douyin_user_id",
                       **_phones("r.receiver_phone", "r.receiver_phone_masked")})} AS customer_identifiers
FROM rows r LEFT JOIN totals t USING (order_id)
"""
_ONLINE_ORDER_ITEMS = f"""
SELECT order_id, line_no, item.product_id AS product_id, item.sku AS sku,
  CAST(item.quantity AS INTEGER) AS quantity, CAST(item.unit_price AS DECIMAL(18, 2)) AS unit_price,
  CAST(coalesce(item.discount, '0') AS DECIMAL(18, 2)) AS discount,
  CAST(CAST(item.quantity AS INTEGER) * CAST(item.unit_price AS DECIMAL(18, 2))
       - CAST(coalesce(item.discount, '0') AS DECIMAL(18, 2)) AS DECIMAL(18, 2)) AS amount, currency
FROM ({_ONLINE_ITEMS})
"""
_ONLINE_CHECK = f"""
WITH unpacked AS (SELECT _row, from_json(items, '{_ITEM_TYPE}') AS list FROM rows),
lines AS (SELECT _row, unnest(range(1, len(list) + 1)) AS n, unnest(list) AS item FROM unpacked)
SELECT _row, min_by('below_min', n) AS code, 'items.quantity' AS field,
  min_by('items[' || n || '].quantity must be a whole number ≥ 0 / 商品数量必须是不小于 0 的整数: '
         || coalesce(item.quantity, '(empty)'), n) AS reason
FROM lines WHERE coalesce(TRY_CAST(item.quantity AS INTEGER), -1) < 0
   OR TRY_CAST(item.unit_price AS DECIMAL(18, 2)) IS NULL
GROUP BY _row
"""
_MEMBER_IDS = {"member_id": "member_id", "phone": "CASE WHEN NOT phone_masked THEN phone END",
               "phone_masked": "CASE WHEN phone_masked THEN phone END", "wechat_openid": "wechat_openid",
               "wechat_unionid": "wechat_unionid", "email": "email"}
_CRM = f"""
SELECT 'member:' || member_id AS record_id, _source_id AS source_id, 'member' AS kind,
  registered_at AS occurred_at, {_identifiers(_MEMBER_IDS)} AS identifiers,
  {_attributes(["name", "gender", "birthday", "province", "city", "level", "register_store"])} AS attributes,
  _imported_at AS imported_at
FROM rows
"""


_PRODUCT_OF_SKU = Lookup(
    "product_of_sku", "products", "SELECT sku, product_id FROM products WHERE sku IS NOT NULL",
    ("sku", "product_id"))
# Stock rows name a product by SKU, barcode or both: the SKU wins (it is the unit
# stock is kept in), the barcode fills in when the SKU is absent or unknown.
_PRODUCT_OF_STOCK_ROW = """
FROM rows r LEFT JOIN product_of_barcode b ON b.barcode = r.barcode
LEFT JOIN product_of_sku s ON s.sku = r.sku"""
_STOCK_LEDGER = f"""
SELECT movement_id, occurred_at, location_id, r.barcode, coalesce(r.sku, b.sku) AS sku,
  coalesce(s.product_id, b.product_id) AS product_id, movement_type, CAST(quantity AS INTEGER) AS quantity,
  reason, reference, _source_id AS source_id, _imported_at AS imported_at
{_PRODUCT_OF_STOCK_ROW}"""
_STOCK_COUNTS = f"""
SELECT location_id, r.barcode, coalesce(s.product_id, b.product_id) AS product_id, counted_at,
  CAST(counted_qty AS INTEGER) AS counted_qty, CAST(system_qty AS INTEGER) AS system_qty
{_PRODUCT_OF_STOCK_ROW}"""


def _plain(table: str, columns: list[str]) -> str:
    """A 1:1 SELECT of fields named like the table's columns."""
    return f"SELECT {', '.join(columns)} FROM rows"


KINDS: dict[str, Kind] = {
    "pos_sales": Kind("pos_sales", "orders", ("order_id",), "order_id",
                      (("orders", _POS_ORDERS), ("order_items", _POS_ITEMS)), lookups=(_PRODUCT_OF_BARCODE,)),
    "online_orders": Kind("online_orders", "orders", ("order_id",), "order_id",
                          (("orders", _ONLINE_ORDERS), ("order_items", _ONLINE_ORDER_ITEMS)), _ONLINE_CHECK),
    "crm_members": Kind("crm_members", "source_records", ("record_id",),
                        "'member:' || member_id AS record_id", (("source_records", _CRM),)),
    "products": Kind("products", "products", ("sku",), "sku", (("products", _plain(
        "products", ["product_id", "sku", "barcode", "name", "brand", "category", "subcategory", "product_line",
                     "price", "cost", "_currency AS currency", "launch_date", "is_consumable",
                     "_imported_at AS updated_at"])),)),
    "stores": Kind("stores", "stores", ("store_id",), "store_id", (("stores", _plain(
        "stores", ["store_id", "name", "province", "city", "opened_on", "closed_on"])),)),
    "inventory_movements": Kind(
        "inventory_movements", "inventory_movements", ("movement_id",), "movement_id",
        (("inventory_movements", _STOCK_LEDGER),), lookups=(_PRODUCT_OF_BARCODE, _PRODUCT_OF_SKU)),
    "stock_counts": Kind(
        "stock_counts", "stock_counts", ("location_id", "barcode", "counted_at"),
        "location_id, barcode, counted_at",
        (("stock_counts", _STOCK_COUNTS),), lookups=(_PRODUCT_OF_BARCODE, _PRODUCT_OF_SKU)),
    "ad_spend": Kind(
        "ad_spend", "ad_spend", ("day", "channel", "campaign_id"), "day, channel, campaign_id",
        (("ad_spend", _plain("ad_spend", [
            "day", "channel", "campaign_id", "campaign_name", "coalesce(currency, _currency) AS currency", "spend",
            "impressions", "clicks", "conversions", "conversion_value", "_source_id AS source_id"])),)),
}


def _record_kind(name: str, record_kind: str, ids: dict[str, str], attributes: list[str],
                 key: list[str], occurred: str, check_sql: str | None = None) -> Kind:
    """A kind loading one `source_records` row per source row (CRM, social, leads).

    The record id is the kind plus the row's natural key, so the same interaction
    exported twice is recognized.
    """
    record_id = f"'{name}:' || concat_ws('|', {', '.join(f'CAST({part} AS VARCHAR)' for part in key)})"
    select = (f"SELECT {record_id} AS record_id, _source_id AS source_id, '{record_kind}' AS kind, "
              f"{occurred} AS occurred_at, {_identifiers(ids)} AS identifiers, "
              f"{_attributes(attributes)} AS attributes, _imported_at AS imported_at FROM rows")
    return Kind(name, "source_records", ("record_id",), f"{record_id} AS record_id",
                (("source_records", select),), check_sql)


_LIVESTREAM_CHECK = """
SELECT _row, 'bad_interval' AS code, '离开时间' AS field,
  'leave time is before enter time / 离开时间早于进入时间: ' || CAST(left_at AS VARCHAR) AS reason
FROM rows WHERE left_at < entered_at
"""

_BENCHMARK_SERIES = {
    "industry_benchmark": ("'industry'", [("industry_trade_index", "trade_index"),
                                          ("industry_search_popularity", "search_popularity")]),
    "competitor_search": ("brand", [("search_index", "index_total"), ("search_index_pc", "index_pc"),
                                    ("search_index_mobile", "index_mobile")]),
}


def _benchmark_kind(name: str) -> Kind:
    """Wide market-data exports unpivoted to one `benchmarks` row per series and day."""
    subject, series = _BENCHMARK_SERIES[name]
    parts = " UNION ALL ".join(
        f"SELECT '{label}' AS series, {subject} AS subject, category, day, CAST({column} AS DOUBLE) AS value, "
        f"'index' AS unit, _source_id AS source_id FROM rows" for label, column in series)
    key = f"'{series[0][0]}' AS series, {subject} AS subject, category, day"
    return Kind(name, "benchmarks", ("series", "subject", "category", "day"), key, (("benchmarks", parts),))


_SURVEY = """
SELECT coalesce(survey_id, 'survey') || ':' || response_no AS response_id, coalesce(survey_id, 'survey') AS survey_id,
  coalesce(member_id, phone) AS respondent_ref,
  CASE WHEN member_id IS NOT NULL THEN 'member_id' WHEN phone IS NOT NULL THEN 'phone' END AS respondent_ref_type,
  submitted_at, to_json({'duration': duration, 'channel': channel, 'income': income, 'job': job,
    'categories': string_split(categories, '┋'), 'shopping_channel': shopping_channel,
    'price_sensitivity': price_sensitivity, 'suggestion': suggestion}) AS answers,
  _source_id AS source_id, _imported_at AS imported_at
FROM rows
"""

KINDS.update({
    "industry_benchmark": _benchmark_kind("industry_benchmark"),
    "competitor_search": _benchmark_kind("competitor_search"),
    "survey_responses": Kind("survey_responses", "survey_responses", ("response_id",),
                             "coalesce(survey_id, 'survey') || ':' || response_no AS response_id",
                             (("survey_responses", _SURVEY),)),
    "wechat_follows": _record_kind(
        "wechat_follows", "follow", {"wechat_oa_openid": "openid", "wechat_unionid": "unionid"},
        ["account", "unfollowed_at", "follow_channel", "gender", "province", "city"],
        ["account", "openid", "followed_at"], "followed_at"),
    "douyin_interactions": _record_kind(
        "douyin_interactions", "interaction", {"douyin_user_id": "user_id"},
        ["account", "nickname", "interaction_type", "post_id", "post_published_at", "gender", "age_band", "province"],
        ["user_id", "interaction_type", "post_id", "interacted_at"], "interacted_at"),
    "weibo_interactions": _record_kind(
        "weibo_interactions", "interaction", {"weibo_user_id": "user_id"},
        ["nickname", "interaction_type", "post_id", "post_published_at", "gender", "age_band", "location"],
        ["user_id", "interaction_type", "post_id", "interacted_at"], "interacted_at"),
    "livestream_views": _record_kind(
        "livestream_views", "livestream_view", {"douyin_user_id": "user_id"},
        ["room_id", "started_at", "left_at", "clicked_products", "ordered", "ordered_product"],
        ["room_id", "user_id", "entered_at"], "entered_at", _LIVESTREAM_CHECK),
    # A sales CRM's lead export (销售线索): activation.leads scores and distributes them.
    "prospects": _record_kind(
        "prospects", "lead", {"phone": "phone"},
        ["lead_id", "created_at", "source", "contact_name", "company", "city", "last_activity_at", "pages_viewed",
         "price_checks", "sample_requested", "owner", "status", "converted_at"],
        ["lead_id"], "created_at"),
    # A marketing-automation tool's send log; the measure stage resolves recipients to persons.
    "message_history": Kind("message_history", "message_history", ("record_id",),
                            "campaign_id || '|' || recipient AS record_id", (("message_history", _plain(
                                "message_history", [
                                    "campaign_id || '|' || recipient AS record_id", "campaign_id",
                                    "campaign_name", "channel", "recipient", "arm", "sent_at", "delivered",
                                    "opened_at", "clicked_at", "unsubscribed", "converted_order_id",
                                    "_source_id AS source_id", "_imported_at AS imported_at"])),)),
})
