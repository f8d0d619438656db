-- Orders by local (Asia/Shanghai) calendar day, ISO weekday and hour: the UTC instants
-- are converted for calendar logic, as the console shows them.
WITH local_orders AS (
    SELECT order_id, net_amount,
           CAST(placed_at AS TIMESTAMPTZ) AT TIME ZONE 'Asia/Shanghai' AS placed_local
    FROM orders
)
SELECT CAST(placed_local AS DATE) AS local_day,
       ISODOW(placed_local) AS iso_weekday,
       HOUR(placed_local) AS local_hour,
       COUNT(*) AS orders,
       SUM(net_amount) AS gmv
FROM local_orders
GROUP BY CAST(placed_local AS DATE), ISODOW(placed_local), HOUR(placed_local)
