-- Sessions per browser: a new session starts after 30 minutes without an event.
WITH ordered AS (
    SELECT anonymous_id, "timestamp",
           LAG("timestamp") OVER (PARTITION BY anonymous_id ORDER BY "timestamp", message_id) AS previous_at
    FROM events
    WHERE anonymous_id IS NOT NULL
),
flagged AS (
    SELECT anonymous_id, "timestamp",
           CASE WHEN previous_at IS NULL OR DATE_DIFF('minute', previous_at, "timestamp") > 30
                THEN 1 ELSE 0 END AS starts_session
    FROM ordered
)
SELECT anonymous_id,
       SUM(starts_session) AS sessions,
       COUNT(*) AS events,
       MIN("timestamp") AS first_seen,
       MAX("timestamp") AS last_seen
FROM flagged
GROUP BY anonymous_id
