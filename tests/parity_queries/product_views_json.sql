-- Product views by category and product, read from the Segment properties JSON.
SELECT properties->>'$.category' AS category,
       properties->>'$.product_id' AS product_id,
       COUNT(*) AS views,
       COUNT(DISTINCT anonymous_id) AS viewers,
       SUM(TRY_CAST(properties->>'$.price' AS DECIMAL(18, 2))) AS viewed_value
FROM events
WHERE type = 'track' AND event = 'Product Viewed'
GROUP BY properties->>'$.category', properties->>'$.product_id'
