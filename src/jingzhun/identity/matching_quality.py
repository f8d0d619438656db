"""How well matching recovers known duplicates: precision and recall against a truth.

The demo generator knows who registered twice (`demo-truth/identifiers.parquet`:
member_id → person_key); so can a brand that has hand-checked a sample. A true
pair is *found* when the two members share a phone (the deterministic graph links
them) or the matcher merged them (`auto_merged`, or `accepted` by an operator).

A duplicate can carry no evidence a matcher could use: a new phone *and* no
birthday on one of the two records leaves only a name and a city, which many people
share. `recall_with_evidence` counts only pairs that share a phone or where both
records have a birthday, so it shows whether the matcher misses anything the data
supports; `recall` counts every pair of the truth. (The demo plants no evidence-free
duplicates, so there the two are equal; a brand's hand-checked sample may have some.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

from jingzhun.engine import Engine
from jingzhun.identity.matching_records import ID_TYPE, RECORDS

TRUTH = "identity_match_truth"

QUALITY_SQL = f"""
WITH truth_pairs AS (
  SELECT a.member_id AS left_value, b.member_id AS right_value,
    (ra.phone = rb.phone) AS same_phone,
    (ra.birthday IS NOT NULL AND rb.birthday IS NOT NULL) AS both_birthdays
  FROM {TRUTH} AS a
  JOIN {TRUTH} AS b ON a.person_key = b.person_key AND a.member_id < b.member_id
  JOIN {RECORDS} AS ra ON ra.member_id = a.member_id
  JOIN {RECORDS} AS rb ON rb.member_id = b.member_id
),
merged AS (
  SELECT left_value, right_value FROM match_candidates
  WHERE status IN ('auto_merged', 'accepted') AND left_type = '{ID_TYPE}' AND right_type = '{ID_TYPE}'
),
judged AS (
  SELECT t.*, (m.left_value IS NOT NULL) AS merged FROM truth_pairs AS t
  LEFT JOIN merged AS m ON m.left_value = t.left_value AND m.right_value = t.right_value
),
merged_truth AS (
  SELECT COUNT(*) AS merged_pairs, COUNT(t.left_value) AS merged_true FROM merged AS m
  LEFT JOIN truth_pairs AS t ON t.left_value = m.left_value AND t.right_value = m.right_value
)
SELECT COUNT(*) AS true_pairs,
  SUM(CASE WHEN same_phone THEN 1 ELSE 0 END) AS found_by_phone,
  SUM(CASE WHEN merged AND NOT COALESCE(same_phone, FALSE) THEN 1 ELSE 0 END) AS found_by_matching,
  SUM(CASE WHEN same_phone OR merged THEN 1 ELSE 0 END) AS found,
  SUM(CASE WHEN same_phone OR both_birthdays THEN 1 ELSE 0 END) AS with_evidence,
  SUM(CASE WHEN (same_phone OR both_birthdays) AND (same_phone OR merged) THEN 1 ELSE 0 END)
    AS with_evidence_found,
  MAX(mt.merged_pairs) AS merged_pairs, MAX(mt.merged_true) AS merged_true
FROM judged CROSS JOIN merged_truth AS mt
"""


@dataclass(frozen=True)
class MatchQuality:
    """Counts of true duplicate member pairs and how many were recovered."""

    true_pairs: int
    found_by_phone: int
    found_by_matching: int
    found: int
    with_evidence: int
    with_evidence_found: int
    merged_pairs: int
    merged_true: int

    @property
    def recall(self) -> float:
        return self.found / self.true_pairs if self.true_pairs else 1.0

    @property
    def recall_with_evidence(self) -> float:
        return self.with_evidence_found / self.with_evidence if self.with_evidence else 1.0

    @property
    def precision(self) -> float:
        """Of the pairs the matcher merged, the share that are truly one person."""
        return self.merged_true / self.merged_pairs if self.merged_pairs else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "recall_with_evidence": round(self.recall_with_evidence, 4)}


def match_quality(engine: Engine, truth: pa.Table) -> MatchQuality:
    """Precision and recall of the current `match_candidates` against `truth`, a table
    of `member_id` and `person_key` (two member ids with one key are one person)."""
    engine.write_table(TRUTH, truth.select(["member_id", "person_key"]), mode="replace")
    try:
        row = engine.query(QUALITY_SQL).to_pylist()[0]
    finally:
        engine.drop_table(TRUTH)
    return MatchQuality(**{key: int(value or 0) for key, value in row.items()})
