-- RFM: recency, frequency and monetary value per buyer, each scored 1-5 by quintile.
WITH buyers AS (
    SELECT customer_ref,
           MAX(placed_at) AS last_order_at,
           COUNT(*) AS frequency,
           SUM(net_amount) AS monetary
    FROM orders
    WHERE status <> 'cancelled' AND customer_ref IS NOT NULL
    GROUP BY customer_ref
)
SELECT customer_ref,
       DATE_DIFF('day', last_order_at, TIMESTAMPTZ '2026-11-01 00:00:00+00') AS recency_days,
       frequency,
       monetary,
       NTILE(5) OVER (ORDER BY last_order_at DESC, customer_ref) AS r_score,
       NTILE(5) OVER (ORDER BY frequency, customer_ref) AS f_score,
       NTILE(5) OVER (ORDER BY monetary, customer_ref) AS m_score
FROM buyers
