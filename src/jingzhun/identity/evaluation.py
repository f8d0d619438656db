"""How good is the ID graph? Pairwise precision and recall against known answers.

Every pair of identifiers is a decision: same person or not. Against a truth table
`(person_key, id_type, id_value)` (the demo's `demo-truth/identifiers.parquet`, or a
hand-labelled sample), over the identifiers both sides know:

- precision = pairs we put together that truly belong together / pairs we put together
- recall    = pairs we put together that truly belong together / pairs truly together

Computed in SQL from cluster sizes (Σ n·(n−1)/2 per cell), never by listing pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from jingzhun.engine import Engine

TRUTH = "identity_work_truth"


@dataclass(frozen=True)
class PairwiseScores:
    """Pairwise same-person decisions compared with the truth."""

    identifiers: int          # truth identifiers found in `identities`
    truth_identifiers: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def coverage(self) -> float:
        return self.identifiers / self.truth_identifiers if self.truth_identifiers else 1.0

    def describe(self) -> str:
        return (f"pairwise precision {self.precision:.4f}, recall {self.recall:.4f} "
                f"({self.correct_pairs}/{self.predicted_pairs} predicted, {self.true_pairs} true pairs; "
                f"{self.identifiers}/{self.truth_identifiers} truth identifiers resolved)")


def pairwise_scores(engine: Engine, truth: pa.Table, id_types: list[str] | None = None) -> PairwiseScores:
    """Score `identities` against `truth(person_key, id_type, id_value)`.

    `id_types` restricts both sides to those types (e.g. the ones deterministic rules
    can reach).
    """
    columns = truth.select(["person_key", "id_type", "id_value"])
    columns = columns.set_column(0, "person_key", columns.column("person_key").cast(pa.string()))
    engine.write_table(TRUTH, columns, mode="replace")
    only = ""
    if id_types:
        only = "AND t.id_type IN (" + ", ".join(f"'{kind}'" for kind in id_types if kind.isidentifier()) + ")"
    try:
        row = engine.query(f"""
WITH both_known AS (
  SELECT t.person_key, i.person_id FROM {TRUTH} AS t
  JOIN identities AS i ON i.id_type = t.id_type AND i.id_value = t.id_value WHERE TRUE {only}
), pairs AS (
  SELECT 'true' AS side, COUNT(*) AS n FROM both_known GROUP BY person_key
  UNION ALL SELECT 'predicted', COUNT(*) FROM both_known GROUP BY person_id
  UNION ALL SELECT 'correct', COUNT(*) FROM both_known GROUP BY person_key, person_id
)
SELECT
  (SELECT COUNT(*) FROM both_known) AS identifiers,
  (SELECT COUNT(*) FROM {TRUTH} AS t WHERE TRUE {only}) AS truth_identifiers,
  SUM(CASE WHEN side = 'true' THEN n * (n - 1) / 2 ELSE 0 END) AS true_pairs,
  SUM(CASE WHEN side = 'predicted' THEN n * (n - 1) / 2 ELSE 0 END) AS predicted_pairs,
  SUM(CASE WHEN side = 'correct' THEN n * (n - 1) / 2 ELSE 0 END) AS correct_pairs
FROM pairs
""").to_pylist()[0]
    finally:
        engine.drop_table(TRUTH)
    return PairwiseScores(**{key: int(value or 0) for key, value in row.items()})
