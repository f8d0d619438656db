"""The Splink model behind probabilistic matching: comparisons, blocking, training.

Splink (Fellegi–Sunter, https://github.com/moj-analytical-services/splink) runs the
model (see `matching_backends` for how it reaches each engine). We describe *what*
to compare; Splink estimates how much each agreement is worth, without labels:

* `u` (how often two different people agree by chance) by random sampling;
* `m` (how often the same person agrees with themself) by expectation maximisation
  on pairs blocked on birthday, on phone and on the pinyin of the name and the city;
* the prior (how many pairs are duplicates at all) from pairs that share a phone or
  a name and birthday, assuming those rules find 80% of the duplicates.

Only functions both engines have natively are used (`levenshtein`, `=`): Splink's
Jaro-Winkler on Spark needs its Scala jar on the cluster, and on two- or
three-character Chinese names an edit distance says as much.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from jingzhun.core.errors import JingzhunError

if TYPE_CHECKING:  # splink takes ~0.5 s to import: only matching runs pay for it
    from splink import SettingsCreator
    from splink.internals.blocking_rule_creator import BlockingRuleCreator
    from splink.internals.database_api import DatabaseAPI
    from splink.internals.splink_dataframe import SplinkDataFrame

log = logging.getLogger(__name__)

UNIQUE_ID = "member_id"
# A level never seen among duplicates is unlikely, not impossible: without a floor, EM
# sets m = 0 there (e.g. "birthday differs" on clean data) and one typo vetoes a match.
M_FLOOR = 1e-3
U_FLOOR = 1e-9
PRIOR_RECALL = 0.8  # share of duplicates that share a phone, or a name and a birthday
U_MAX_PAIRS = 3e6  # pairs sampled for u: ~100 chance agreements even on a 1-in-30,000 level
SEED = 42


@dataclass(frozen=True)
class Level:
    """One agreement level: a Splink SQL condition over `<column>_l` / `<column>_r`."""

    label: str
    condition: str
    tf_column: str | None = None  # term-frequency adjustment (a common value says less)


@dataclass(frozen=True)
class Comparison:
    """One compared field: its missing-value condition and levels, most similar first."""

    name: str
    missing: str
    levels: tuple[Level, ...]

    def labels_by_gamma(self) -> dict[int, str]:
        """Splink's level numbers (`gamma_<name>`): -1 missing, then n-1 … 0 (else)."""
        count = len(self.levels)
        return {-1: "missing", **{count - 1 - i: level.label for i, level in enumerate(self.levels)}}


DIFFERENT = Level("different", "ELSE")

COMPARISONS: tuple[Comparison, ...] = (
    Comparison("name", "name_l IS NULL OR name_r IS NULL", (
        Level("exact", "name_l = name_r", tf_column="name"),
        # No tf adjustment here: a pinyin's frequency is mostly people with the very same
        # name, who land on the exact level; charging it again hides 同音字 typos.
        Level("homophone", "name_pinyin_l = name_pinyin_r"),
        Level("swapped", "name_l = name_swapped_r"),
        Level("one_character", "levenshtein(name_l, name_r) <= 1"),
        DIFFERENT,
    )),
    Comparison("birthday", "birthday_l IS NULL OR birthday_r IS NULL", (
        # tf: default birthdays (a shop's 2008-11-01 for everyone) agree by the hundred.
        Level("exact", "birthday_l = birthday_r", tf_column="birthday"),
        Level("one_digit", "levenshtein(birthday_l, birthday_r) <= 1"),
        DIFFERENT,
    )),
    Comparison("region", "province_l IS NULL OR province_r IS NULL", (
        Level("same_city", "city_l = city_r", tf_column="city"),
        Level("same_province", "province_l = province_r"),
        DIFFERENT,
    )),
    Comparison("phone", "phone_l IS NULL OR phone_r IS NULL", (
        Level("exact", "phone_l = phone_r"),
        Level("typo", "levenshtein(phone_l, phone_r) <= 2"),
        DIFFERENT,
    )),
    Comparison("gender", "gender_l IS NULL OR gender_r IS NULL", (
        Level("same", "gender_l = gender_r"),
        DIFFERENT,
    )),
)


@cache
def predict_blocking() -> tuple[BlockingRuleCreator | str, ...]:
    """Pairs scored: each rule is an equi-join, so the work grows with duplicates, not n²."""
    from splink import block_on

    return (
        block_on("phone"),
        block_on("birthday", "gender"),
        block_on("name_pinyin", "province"),
        "l.name = r.name_swapped",  # 张思晗 / 张晗思 with no birthday to block on
    )


@cache
def training_blocking() -> tuple[BlockingRuleCreator | str, ...]:
    """The EM sessions, one per rule: each field's m is the median over the sessions that
    could estimate it (a field in the rule is fixed), so each must start sensibly."""
    from splink import block_on

    # Splink starts a session at the prior times the Bayes factor of the level that is an
    # exact match on each blocked column. For `province` that level is "same province,
    # other city", which duplicates never reach (m ≈ 0): the session began at λ ≈ 1e-16,
    # settled on "a duplicate always shares its phone" (m = 1.0), and the median of that
    # and the birthday session's 0.74 put a new phone at -3.0 bits instead of -2.0.
    # `city` has its own level.
    return (block_on("birthday", "gender"), block_on("phone"), block_on("name_pinyin", "city"))


@cache
def prior_rules() -> tuple[BlockingRuleCreator | str, ...]:
    """Pairs that share a phone, or a name and a birthday (`PRIOR_RECALL` of duplicates)."""
    from splink import block_on

    return (block_on("phone"), block_on("name", "birthday"))


class MatchingError(JingzhunError):
    """Probabilistic matching could not run or a review decision is invalid."""


def splink_settings() -> SettingsCreator:
    """The untrained model: which fields to compare and which pairs to score."""
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        comparisons=[_splink_comparison(comparison) for comparison in COMPARISONS],
        blocking_rules_to_generate_predictions=list(predict_blocking()),
        additional_columns_to_retain=["email"],
        retain_intermediate_calculation_columns=True,
    )


def _splink_comparison(comparison: Comparison) -> dict[str, Any]:
    levels: list[dict[str, Any]] = [
        {"sql_condition": comparison.missing, "label_for_charts": "missing", "is_null_level": True}]
    for level in comparison.levels:
        spec: dict[str, Any] = {"sql_condition": level.condition, "label_for_charts": level.label}
        if level.tf_column:
            spec |= {"tf_adjustment_column": level.tf_column, "tf_adjustment_weight": 1.0}
        levels.append(spec)
    return {"output_column_name": comparison.name, "comparison_levels": levels}


def train_model(db_api: DatabaseAPI, records: str | pa.Table, record_count: int) -> dict[str, Any]:
    """Estimate the model on `records` without labels; return it as Splink's JSON dict."""
    from splink import Linker

    with quiet_splink():
        linker = Linker(db_api.register(records), splink_settings(), log_level=None)
        training = linker.training
        training.estimate_probability_two_random_records_match(list(prior_rules()), recall=PRIOR_RECALL)
        pairs = max(1.0, min(U_MAX_PAIRS, record_count * (record_count - 1) / 2))
        # One chunk: on Spark every chunk is several jobs, and 3e6 pairs fit in memory.
        training.estimate_u_using_random_sampling(max_pairs=pairs, seed=SEED, num_chunks=1)
        for rule in training_blocking():
            try:
                training.estimate_parameters_using_expectation_maximisation(rule)
            except ValueError as failed:
                # EM can drive an m probability below float range on very clean data
                # ("m_probability value 1.9e-316 is below the minimum"); the other
                # sessions' estimates still stand.
                log.warning("EM on %s skipped: %s", rule, failed)
        return floored(linker.misc.save_model_to_json())


@contextmanager
def quiet_splink() -> Iterator[None]:
    """Hold back Splink's own warnings ("level … not observed, unable to train m"):
    `floored` deals with exactly those, and our notes report the run."""
    splink_log = logging.getLogger("splink")
    level = splink_log.level
    splink_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        splink_log.setLevel(level)


def floored(model: dict[str, Any]) -> dict[str, Any]:
    """The model with every untrained or zero m/u raised to a small floor."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            level["m_probability"] = max(level.get("m_probability") or 0.0, M_FLOOR)
            level["u_probability"] = max(level.get("u_probability") or 0.0, U_FLOOR)
    return model


def model_version(model: dict[str, Any]) -> str:
    """A version naming the Splink release and a hash of the trained parameters."""
    # Only what was learned: the prior and each level's m and u. The settings' SQL is
    # rendered per engine (sql_dialect, function spellings), so it would give the same
    # trained model two versions on DuckDB and Spark.
    stable = {
        "prior": model.get("probability_two_random_records_match"),
        "comparisons": [
            [comparison.get("output_column_name"),
             [[level.get("label_for_charts"), level.get("m_probability"), level.get("u_probability")]
              for level in comparison.get("comparison_levels", [])]]
            for comparison in model.get("comparisons", [])
        ],
    }
    # Parallel sums may differ in the last bits between runs; 8 digits are the model.
    text = json.dumps(_rounded(stable), sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"splink-{version('splink')}-{digest[:12]}"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.8g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def predict(db_api: DatabaseAPI, records: str | pa.Table, model: dict[str, Any], threshold: float) -> SplinkDataFrame:
    """Score every blocked pair with the trained `model`; keep those ≥ `threshold`."""
    from splink import Linker

    with quiet_splink():
        linker = Linker(db_api.register(records), model, log_level=None)
        return linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")


def evidence_sql() -> str:
    """A SQL expression over Splink's prediction columns giving each field's level and
    match weight as JSON text, e.g. {"name":{"level":"homophone","weight":11.9},...}.

    Labels are our own constants, so plain concatenation builds valid JSON on both
    engines (their JSON functions differ).
    """
    fields = []
    for comparison in COMPARISONS:
        cases = " ".join(f"WHEN {gamma} THEN '{label}'" for gamma, label in comparison.labels_by_gamma().items())
        weight = f"mw_{comparison.name}"
        if any(level.tf_column for level in comparison.levels):
            weight += f" + COALESCE(mw_tf_adj_{comparison.name}, 0)"
        fields.append(
            f"""'"{comparison.name}":{{"level":"' || CASE gamma_{comparison.name} {cases} END"""
            f""" || '","weight":' || CAST(COALESCE(ROUND({weight}, 2), 0) AS VARCHAR) || '}}'""")
    return "'{' || " + " || ',' || ".join(fields) + " || '}'"
