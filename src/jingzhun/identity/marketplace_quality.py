"""How well marketplace buyers are linked to members: precision and recall against a truth.

The demo generator knows whose buyer id is whose (`demo-truth/identifiers.parquet`:
person_key, id_type, id_value, with tmall_open_uid, jd_pin and douyin_user_id); so
does a brand that hand-checked a sample. A buyer id is *linked* when its
`marketplace_match` candidate with a member is `auto_merged` or `accepted`, and the
link is true when the buyer and the member are one person in the truth. Links between
buyer ids of two platforms are counted apart (`linked_across`, with their precision).

Two recalls, because the data bound what any matcher can do:

* `recall`: over every buyer whose person has a member record at all;
* `recall_with_evidence`: over those whose member's phone masks to a receiver phone of
  the buyer's orders (a member who registered another phone than the one she ships to
  leaves nothing to compare).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.identity.identifiers import in_list, masked_phone_sql
from jingzhun.identity.marketplace import PREFIX
from jingzhun.identity.marketplace_sql import MEMBER_TYPE
from jingzhun.identity.matching_records import RECORDS

TRUTH = "identity_market_truth"
BUYER_TYPES = ("tmall_open_uid", "jd_pin", "douyin_user_id")

QUALITY_SQL = f"""
WITH buyers AS (
  SELECT customer_ref_type AS buyer_type, customer_ref AS buyer_id,
    customer_identifiers->>'$.phone_masked' AS masked
  FROM orders WHERE customer_ref_type IN {in_list(BUYER_TYPES)} AND customer_ref IS NOT NULL
),
owned AS (
  SELECT DISTINCT b.buyer_type, b.buyer_id, b.masked, t.person_key FROM buyers AS b
  JOIN {TRUTH} AS t ON t.id_type = b.buyer_type AND t.id_value = b.buyer_id
),
members AS (
  SELECT r.member_id, r.phone, t.person_key FROM {RECORDS} AS r
  JOIN {TRUTH} AS t ON t.id_type = '{MEMBER_TYPE}' AND t.id_value = r.member_id
),
judged AS (
  SELECT o.buyer_type, o.buyer_id,
    MAX(CASE WHEN m.member_id IS NOT NULL THEN 1 ELSE 0 END) AS member,
    MAX(CASE WHEN {masked_phone_sql('m.phone')} = o.masked THEN 1 ELSE 0 END) AS evidence
  FROM owned AS o LEFT JOIN members AS m ON m.person_key = o.person_key
  GROUP BY o.buyer_type, o.buyer_id
),
linked AS (
  SELECT c.left_type, c.left_value, c.right_type,
    CASE WHEN tb.person_key = COALESCE(m.person_key, tr.person_key) THEN 1 ELSE 0 END AS correct
  FROM match_candidates AS c
  LEFT JOIN {TRUTH} AS tb ON tb.id_type = c.left_type AND tb.id_value = c.left_value
  LEFT JOIN members AS m ON c.right_type = '{MEMBER_TYPE}' AND m.member_id = c.right_value
  LEFT JOIN {TRUTH} AS tr ON c.right_type <> '{MEMBER_TYPE}' AND tr.id_type = c.right_type
    AND tr.id_value = c.right_value
  WHERE c.candidate_id LIKE '{PREFIX}%' AND c.status IN ('auto_merged', 'accepted')
),
links AS (
  SELECT left_type, left_value, MAX(correct) AS correct FROM linked WHERE right_type = '{MEMBER_TYPE}'
  GROUP BY left_type, left_value
),
across AS (SELECT COUNT(*) AS n, SUM(correct) AS correct FROM linked WHERE right_type <> '{MEMBER_TYPE}'),
pending AS (SELECT COUNT(DISTINCT left_type || ':' || left_value) AS n FROM match_candidates
            WHERE candidate_id LIKE '{PREFIX}%' AND status = 'pending')
SELECT COUNT(*) AS buyers, SUM(j.member) AS with_member, SUM(j.evidence) AS with_evidence,
  (SELECT COUNT(*) FROM links) AS linked, (SELECT SUM(correct) FROM links) AS linked_true,
  SUM(CASE WHEN l.correct = 1 THEN j.evidence ELSE 0 END) AS linked_true_with_evidence,
  MAX(p.n) AS pending_buyers, MAX(a.n) AS linked_across, MAX(a.correct) AS linked_across_true
FROM judged AS j LEFT JOIN links AS l ON l.left_type = j.buyer_type AND l.left_value = j.buyer_id
CROSS JOIN pending AS p CROSS JOIN across AS a
"""


@dataclass(frozen=True)
class MarketplaceQuality:
    """Buyer-to-member links against a truth."""

    buyers: int
    with_member: int
    with_evidence: int
    linked: int
    linked_true: int
    linked_true_with_evidence: int
    pending_buyers: int
    linked_across: int = 0        # buyer ids linked to a buyer id of another platform
    linked_across_true: int = 0

    @property
    def precision_across(self) -> float:
        return self.linked_across_true / self.linked_across if self.linked_across else 1.0

    @property
    def precision(self) -> float:
        return self.linked_true / self.linked if self.linked else 1.0

    @property
    def recall(self) -> float:
        return self.linked_true / self.with_member if self.with_member else 1.0

    @property
    def recall_with_evidence(self) -> float:
        return self.linked_true_with_evidence / self.with_evidence if self.with_evidence else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "recall_with_evidence": round(self.recall_with_evidence, 4),
                "precision_across": round(self.precision_across, 4)}


def marketplace_quality(engine: Engine, truth: pa.Table) -> MarketplaceQuality:
    """Score the marketplace links in `match_candidates` against `truth`
    (person_key, id_type, id_value: every buyer id and member id of each person)."""
    engine.write_table(TRUTH, truth.select(["person_key", "id_type", "id_value"]), mode="replace")
    try:
        row = engine.query(QUALITY_SQL).to_pylist()[0]
    finally:
        engine.drop_table(TRUTH)
    return MarketplaceQuality(**{name: int(value or 0) for name, value in row.items()})
