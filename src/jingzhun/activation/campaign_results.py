"""What a campaign did: per run, channel and arm — audience, held out, left out and why,
sent, failed, opened, clicked and cost — counted by the engine from `deliveries` and
`message_events`, with the SQL beside the numbers. Lift, conversions and attribution are
the measure stage's; this is the send report a marketer checks after pressing the button.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlglot import exp

from jingzhun.activation.campaigns import load_campaign
from jingzhun.activation.policy import literal
from jingzhun.engine import Engine, parse_sql

FUNNEL_SQL = """
WITH responses AS (
  SELECT delivery_id,
    MAX(CASE WHEN event_type = 'opened' THEN 1 ELSE 0 END) AS opened,
    MAX(CASE WHEN event_type = 'clicked' THEN 1 ELSE 0 END) AS clicked
  FROM message_events WHERE campaign_id = :campaign_id AND event_type IN ('opened', 'clicked')
  GROUP BY delivery_id
)
SELECT d.run_id, d.channel, d.variant AS arm, CAST(COUNT(*) AS BIGINT) AS audience,
  CAST(SUM(CASE WHEN d.status = 'held_out' THEN 1 ELSE 0 END) AS BIGINT) AS held_out,
  CAST(SUM(CASE WHEN d.status = 'suppressed' THEN 1 ELSE 0 END) AS BIGINT) AS suppressed,
  CAST(SUM(CASE WHEN d.status = 'deferred' THEN 1 ELSE 0 END) AS BIGINT) AS deferred,
  CAST(SUM(CASE WHEN d.status IN ('queued', 'sending') THEN 1 ELSE 0 END) AS BIGINT) AS pending,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END) AS BIGINT) AS sent,
  CAST(SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed,
  CAST(SUM(CASE WHEN d.status = 'unknown' THEN 1 ELSE 0 END) AS BIGINT) AS unknown,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN COALESCE(r.opened, 0) ELSE 0 END) AS BIGINT) AS opened,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN COALESCE(r.clicked, 0) ELSE 0 END) AS BIGINT) AS clicked,
  CAST(SUM(CASE WHEN d.status = 'sent' THEN d.cost ELSE 0 END) AS DOUBLE) AS cost
FROM deliveries AS d LEFT JOIN responses AS r ON r.delivery_id = d.delivery_id
WHERE d.campaign_id = :campaign_id
GROUP BY d.run_id, d.channel, d.variant
ORDER BY d.run_id, d.channel, d.variant"""

REASONS_SQL = """
SELECT status, reason, CAST(COUNT(*) AS BIGINT) AS deliveries FROM deliveries
WHERE campaign_id = :campaign_id AND reason IS NOT NULL
GROUP BY status, reason ORDER BY deliveries DESC, status, reason"""


@dataclass(frozen=True)
class CampaignResults:
    """The send report of one campaign."""

    campaign_id: str
    version: int
    funnel: pd.DataFrame  # run_id, channel, arm, audience … clicked, cost, open_rate, click_rate
    reasons: pd.DataFrame  # status, reason, deliveries
    sql: dict[str, str]


def campaign_results(engine: Engine, campaign_id: str) -> CampaignResults:
    """Per run, channel and arm: who was reached, who was left out and why, who responded."""
    stored = load_campaign(engine, campaign_id)
    queries = {name: exp.replace_placeholders(parse_sql(text), campaign_id=literal(campaign_id))
               for name, text in (("funnel", FUNNEL_SQL), ("reasons", REASONS_SQL))}
    funnel = engine.query(queries["funnel"]).to_pandas()
    sent = funnel["sent"].where(funnel["sent"] > 0).astype("float64")
    funnel["open_rate"] = (funnel["opened"] / sent).round(4)
    funnel["click_rate"] = (funnel["clicked"] / sent).round(4)
    reasons = engine.query(queries["reasons"]).to_pandas()
    return CampaignResults(campaign_id, stored.version, funnel, reasons,
                           {name: engine.render(query) for name, query in queries.items()})
