"""Portray: traits, tags and predictive scores per person (用户画像).

Public API (the CLI, the web console and later stages call only these): traits
(`compute_traits`), tags (`apply_tags`, `list_tags`, `tag_counts`, `tag_trend`) and the
rule language the segment stage reuses (`parse_rule`, `build_rule_sql`, `RuleCompiler`),
predictive scores (`score_persons`), and one person's whole portrait (`person_portrait`).
"""

from jingzhun.profiles.portrait import PersonNotFound, Portrait, find_person, person_portrait
from jingzhun.profiles.rules import OPS_BY_KIND, parse_rule
from jingzhun.profiles.rules_compiler import RuleCompiler, build_rule_sql
from jingzhun.profiles.scores import ScoresResult, run_scores, score_persons
from jingzhun.profiles.tags import (
    TagRunResult,
    apply_tags,
    list_tags,
    live_catalog,
    run_tags,
    tag_counts,
    tag_trend,
)
from jingzhun.profiles.traits import (
    PERSON_TRAITS,
    RFM_CLASSES,
    TraitsResult,
    compute_traits,
    run_traits,
)
from jingzhun.profiles.traits_sql import TraitsError

__all__ = [
    "OPS_BY_KIND",
    "PERSON_TRAITS",
    "RFM_CLASSES",
    "RuleCompiler",
    "PersonNotFound",
    "Portrait",
    "ScoresResult",
    "TagRunResult",
    "TraitsError",
    "TraitsResult",
    "apply_tags",
    "build_rule_sql",
    "compute_traits",
    "find_person",
    "list_tags",
    "live_catalog",
    "parse_rule",
    "person_portrait",
    "run_scores",
    "run_tags",
    "run_traits",
    "score_persons",
    "tag_counts",
    "tag_trend",
]
