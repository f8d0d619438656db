"""The loop back: how people responded, written where the next pipeline run reads it.

The measure stage runs last, after the tags, scores and audiences it would feed, so it
leaves its findings as tables the **next** run (and the live decisions in between) read:

- `channel_responses`: per person and channel over the last `responses.window_days`
  (180) before the data's latest time — messages delivered, opened, clicked, converted
  (an order in the conversion window), unsubscribed, coupons sent and redeemed, the last
  delivery, click and conversion. The tag library's `sms_unresponsive`,
  `email_unresponsive`, `message_responder` and `coupon_campaign_responder` (which
  `coupon_sensitive` also counts) are SQL tags over it; lead scoring reads
  `clicked`, `converted` and `last_clicked_at` as engagement inputs.
- `send_time_preferences`: per person and channel, the local hour whose messages they
  respond to most. Each hour's click rate is the person's clicks over sends at that send
  hour, smoothed towards the channel's own rate at that hour with `responses.smoothing`
  pseudo-sends (a person with one click at 20:00 does not make 20:00 certain), and the
  best hour wins (ties: the earlier hour). A person without clicks gets the channel's best
  hour, and the evidence says so. Journeys and send-time optimization read this table.

Both are one engine query each over the same sends and orders as the KPIs.
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from jingzhun.engine import parse_sql, to_local_time
from jingzhun.measure.settings import MeasureSettings
from jingzhun.measure.sources import CONVERSION_ORDERS, SENDS, matched_orders_sql


def _stamp(moment: dt.datetime) -> str:
    return exp.cast(exp.Literal.string(moment.isoformat()), exp.DataType.build("TIMESTAMPTZ")).sql("duckdb")


def channel_responses_sql(settings: MeasureSettings, as_of: dt.datetime, computed_at: dt.datetime) -> exp.Expression:
    """`channel_responses` rows as of `as_of` (the data's latest time)."""
    since = f"{_stamp(as_of)} - INTERVAL {settings.responses.window_days} DAY"
    return parse_sql(f"""
WITH recent AS (
  SELECT * FROM ({SENDS}) AS s
  WHERE s.arm = 'treatment' AND s.delivered AND s.person_id IS NOT NULL
    AND s.anchor_at > {since} AND s.anchor_at <= {_stamp(as_of)}
),
conversion_orders AS ({CONVERSION_ORDERS}),
matched AS ({matched_orders_sql(settings.conversion_window, 'recent')}),
converted AS (
  SELECT m.delivery_id, MIN(o.placed_at) AS converted_at FROM matched AS m
  LEFT JOIN conversion_orders AS o ON o.order_id = m.order_id GROUP BY m.delivery_id
),
redeemed AS (
  SELECT DISTINCT r.delivery_id FROM recent AS r
  JOIN orders AS o ON o.coupon_code = r.coupon_code
    AND (o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded'))
  WHERE r.coupon_code IS NOT NULL
)
SELECT r.person_id, r.channel, CAST(COUNT(*) AS BIGINT) AS delivered,
  CAST(SUM(CASE WHEN r.opened_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS opened,
  CAST(SUM(CASE WHEN r.clicked_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS clicked,
  CAST(SUM(CASE WHEN c.delivery_id IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS converted,
  CAST(SUM(CASE WHEN r.unsubscribed THEN 1 ELSE 0 END) AS BIGINT) AS unsubscribed,
  CAST(SUM(CASE WHEN r.coupon_code IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS coupon_messages,
  CAST(SUM(CASE WHEN d.delivery_id IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS coupon_redemptions,
  MAX(r.anchor_at) AS last_delivered_at, MAX(r.clicked_at) AS last_clicked_at,
  MAX(c.converted_at) AS last_converted_at, {_stamp(as_of)} AS as_of, {_stamp(computed_at)} AS computed_at
FROM recent AS r
LEFT JOIN converted AS c ON c.delivery_id = r.delivery_id
LEFT JOIN redeemed AS d ON d.delivery_id = r.delivery_id
GROUP BY r.person_id, r.channel""")


def send_time_sql(settings: MeasureSettings, timezone: str, computed_at: dt.datetime) -> exp.Expression:
    """`send_time_preferences` rows: each person's smoothed best send hour per channel."""
    hour = f"HOUR({to_local_time(exp.column('anchor_at'), timezone).sql('duckdb')})"
    alpha = settings.responses.smoothing
    evidence = ("'{\"sends\": ' || CAST(c.sends AS VARCHAR) || ', \"clicks\": ' || CAST(c.clicks AS VARCHAR) "
                "|| ', \"hour_sends\": ' || CAST(s.hour_sends AS VARCHAR) || ', \"hour_clicks\": ' "
                "|| CAST(s.hour_clicks AS VARCHAR) || ', \"rate_per_10k\": ' "
                "|| CAST(CAST(FLOOR(s.smoothed * 10000 + 0.5) AS BIGINT) AS VARCHAR) "
                "|| ', \"channel_best_hour\": ' || CAST(c.channel_hour AS VARCHAR) || ', \"source\": \"' "
                "|| CASE WHEN c.clicks > 0 THEN 'person' ELSE 'channel' END || '\"}'")
    return parse_sql(f"""
WITH sent AS (
  SELECT person_id, channel, {hour} AS hour, CASE WHEN clicked_at IS NOT NULL THEN 1 ELSE 0 END AS clicked
  FROM ({SENDS}) AS s WHERE s.arm = 'treatment' AND s.delivered AND s.person_id IS NOT NULL
),
channel_hours AS (
  SELECT channel, hour, CAST(SUM(clicked) AS DOUBLE) / COUNT(*) AS rate FROM sent GROUP BY channel, hour
),
channel_best AS (
  SELECT channel, hour FROM (
    SELECT channel, hour, ROW_NUMBER() OVER (PARTITION BY channel ORDER BY rate DESC, hour) AS pick
    FROM channel_hours) AS ranked
  WHERE pick = 1
),
person_hours AS (
  SELECT person_id, channel, hour, COUNT(*) AS sends, SUM(clicked) AS clicks FROM sent
  GROUP BY person_id, channel, hour
),
persons AS (
  SELECT person_id, channel, SUM(sends) AS sends, SUM(clicks) AS clicks FROM person_hours
  GROUP BY person_id, channel
),
scored AS (
  SELECT p.person_id, p.channel, h.hour, COALESCE(ph.sends, 0) AS hour_sends, COALESCE(ph.clicks, 0) AS hour_clicks,
    (COALESCE(ph.clicks, 0) + {alpha} * h.rate) / (COALESCE(ph.sends, 0) + {alpha}) AS smoothed
  FROM persons AS p JOIN channel_hours AS h ON h.channel = p.channel
  LEFT JOIN person_hours AS ph ON ph.person_id = p.person_id AND ph.channel = p.channel AND ph.hour = h.hour
),
best AS (
  SELECT person_id, channel, hour,
    ROW_NUMBER() OVER (PARTITION BY person_id, channel ORDER BY smoothed DESC, hour) AS pick
  FROM scored
),
chosen AS (
  SELECT b.person_id, b.channel, CASE WHEN p.clicks > 0 THEN b.hour ELSE cb.hour END AS hour, p.sends, p.clicks,
    cb.hour AS channel_hour
  FROM best AS b JOIN persons AS p ON p.person_id = b.person_id AND p.channel = b.channel
  JOIN channel_best AS cb ON cb.channel = b.channel
  WHERE b.pick = 1
)
SELECT c.person_id, c.channel, CAST(c.hour AS INTEGER) AS best_hour_local, {evidence} AS evidence,
  {_stamp(computed_at)} AS computed_at
FROM chosen AS c JOIN scored AS s ON s.person_id = c.person_id AND s.channel = c.channel AND s.hour = c.hour""")
