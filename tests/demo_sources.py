"""Read a generated demo workspace's source files into canonical-shaped Arrow tables.

This is test scaffolding for the parity harness: it lets the foundation's tests run
the engines on realistic data before the importers exist. It uses a throwaway
in-memory DuckDB purely as a file reader, skips rows that do not parse (the
importers, not this reader, are where malformed rows get quarantined), and hands
Arrow tables to each engine's `write_table`, so both engines receive identical rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

EVENT_COLUMNS = {
    "messageId": "VARCHAR", "type": "VARCHAR", "event": "VARCHAR", "name": "VARCHAR",
    "userId": "VARCHAR", "anonymousId": "VARCHAR", "previousId": "VARCHAR", "groupId": "VARCHAR",
    "timestamp": "VARCHAR", "originalTimestamp": "VARCHAR", "sentAt": "VARCHAR", "receivedAt": "VARCHAR",
    "properties": "JSON", "context": "JSON", "traits": "JSON",
}

EVENTS_SQL = """
SELECT "messageId" AS message_id, "type" AS type, event, name,
       "userId" AS user_id, "anonymousId" AS anonymous_id,
       "previousId" AS previous_id, "groupId" AS group_id,
       TRY_CAST("timestamp" AS TIMESTAMPTZ) AS "timestamp",
       TRY_CAST("originalTimestamp" AS TIMESTAMPTZ) AS original_timestamp,
       TRY_CAST("sentAt" AS TIMESTAMPTZ) AS sent_at,
       TRY_CAST("receivedAt" AS TIMESTAMPTZ) AS received_at,
       regexp_extract(filename, 'events/([a-z]+)/', 1) AS channel,
       CAST(properties AS VARCHAR) AS properties, CAST(context AS VARCHAR) AS context,
       CAST(traits AS VARCHAR) AS traits
FROM read_json(?, format = 'newline_delimited', ignore_errors = true, filename = true, columns = {columns})
WHERE "messageId" IS NOT NULL AND TRY_CAST("timestamp" AS TIMESTAMPTZ) IS NOT NULL
  AND TRY_CAST("receivedAt" AS TIMESTAMPTZ) IS NOT NULL
"""

ORDERS_SQL = """
CREATE TEMP TABLE raw_orders AS
SELECT * FROM read_json(?, format = 'newline_delimited', ignore_errors = true, columns = {
    order_id: 'VARCHAR', platform: 'VARCHAR', member_id: 'VARCHAR', openid: 'VARCHAR',
    receiver_phone: 'VARCHAR', placed_at: 'VARCHAR', paid_at: 'VARCHAR', status: 'VARCHAR',
    province: 'VARCHAR', city: 'VARCHAR', coupon_code: 'VARCHAR', total_amount: 'DOUBLE',
    items: 'STRUCT(sku VARCHAR, product_id VARCHAR, quantity INTEGER, unit_price DOUBLE, discount DOUBLE)[]'})
WHERE TRY_CAST(placed_at AS TIMESTAMPTZ) IS NOT NULL
  AND list_min(list_transform(items, lambda i: i.quantity)) > 0
"""

ORDERS_SELECT = """
SELECT order_id, 'online' AS channel, platform,
       COALESCE(member_id, openid, receiver_phone) AS customer_ref,
       CASE WHEN member_id IS NOT NULL THEN 'member_id' WHEN openid IS NOT NULL THEN 'wechat_openid'
            ELSE 'phone' END AS customer_ref_type,
       CAST(placed_at AS TIMESTAMPTZ) AS placed_at, TRY_CAST(paid_at AS TIMESTAMPTZ) AS paid_at,
       status, 'CNY' AS currency, CAST(total_amount AS DECIMAL(18, 2)) AS net_amount,
       coupon_code, province AS ship_province, city AS ship_city
FROM raw_orders
"""

ITEMS_SELECT = """
SELECT order_id, CAST(line.i AS INTEGER) AS line_no, line.item.product_id AS product_id, line.item.sku AS sku,
       line.item.quantity AS quantity, CAST(line.item.unit_price AS DECIMAL(18, 2)) AS unit_price,
       CAST(line.item.discount AS DECIMAL(18, 2)) AS discount,
       CAST(line.item.quantity * line.item.unit_price - line.item.discount AS DECIMAL(18, 2)) AS amount,
       'CNY' AS currency
FROM (SELECT order_id, UNNEST(list_transform(items, lambda item, i: {'i': i, 'item': item})) AS line FROM raw_orders)
"""


def read_demo_sources(root: Path) -> dict[str, pa.Table]:
    """Canonical-shaped tables from the demo files under `root/data`."""
    data = root / "data"
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in EVENT_COLUMNS.items()) + "}"
    tables = {
        "events": reader.sql(EVENTS_SQL.format(columns=columns), params=[str(data / "events" / "*" / "*.jsonl")]).to_arrow_table(),
        "products": reader.sql(
            "SELECT product_id, sku, CAST(barcode AS VARCHAR) AS barcode, name, brand, category, subcategory, "
            "product_line, CAST(price AS DECIMAL(18, 2)) AS price, CAST(cost AS DECIMAL(18, 2)) AS cost, "
            "'CNY' AS currency, CAST(launch_date AS DATE) AS launch_date, CAST(is_consumable AS BOOLEAN) AS is_consumable "
            "FROM read_csv(?, header = true, all_varchar = true)", params=[str(data / "catalog" / "products.csv")]
        ).to_arrow_table(),
        "stores": reader.sql(
            "SELECT store_id, name, province, city, CAST(opened_on AS DATE) AS opened_on "
            "FROM read_csv(?, header = true, all_varchar = true)", params=[str(data / "catalog" / "stores.csv")]
        ).to_arrow_table(),
    }
    reader.execute(ORDERS_SQL, [str(data / "orders" / "*.jsonl")])
    tables["orders"] = reader.sql(ORDERS_SELECT).to_arrow_table()
    tables["order_items"] = reader.sql(ITEMS_SELECT).to_arrow_table()
    return tables
