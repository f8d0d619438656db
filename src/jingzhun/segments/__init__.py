"""Segment: audiences, sub-groups, lookalikes and what separates buyers.

Public functions re-exported here; the modules are internal.
"""

from jingzhun.segments.audiences import (
    AudienceDefinition,
    AudienceError,
    audience_changes,
    audience_overlap,
    export_audience,
    list_audiences,
    load_audiences,
    members_sql,
    parse_audience,
    preview_audience,
    run_segments,
    save_audience,
    snapshot_audiences,
)
from jingzhun.segments.clustering import Clustering, ClusteringError, cluster_audience
from jingzhun.segments.insight import Insight, InsightError, feature_insight
from jingzhun.segments.lookalike import Lookalike, LookalikeError, find_lookalikes
from jingzhun.segments.portrait_matrix import PortraitMatrix, portrait_matrix, portrait_matrix_sql
from jingzhun.segments.realtime import (
    LiveChanges,
    LiveMembers,
    LiveUpdate,
    live_changes,
    live_member_counts,
    live_members,
    realtime_problems,
    update_live_audiences,
)

__all__ = [
    "LiveChanges", "LiveMembers", "LiveUpdate", "live_changes", "live_member_counts", "live_members",
    "realtime_problems", "update_live_audiences",
    "AudienceDefinition", "AudienceError", "Clustering", "ClusteringError", "Insight", "InsightError", "Lookalike", "LookalikeError",
    "PortraitMatrix", "audience_changes", "audience_overlap", "cluster_audience", "export_audience",
    "feature_insight", "find_lookalikes", "list_audiences", "load_audiences", "members_sql", "parse_audience", "portrait_matrix",
    "portrait_matrix_sql", "preview_audience", "run_segments", "save_audience", "snapshot_audiences",
]
