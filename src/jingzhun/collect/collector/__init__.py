"""The Segment-compatible HTTP collector: spec, durable log, loader, write keys, plans.

Public API: `create_app(workspace)` (the FastAPI app `jingzhun serve` runs),
`add_source` / `list_sources` (write keys), `load_tracking_plans`.
"""

from jingzhun.collect.collector.app import create_app
from jingzhun.collect.collector.tracking_plan import TrackingPlan, load_tracking_plans
from jingzhun.collect.collector.write_keys import (
    KINDS,
    CollectorError,
    Source,
    add_source,
    hash_key,
    list_sources,
)

__all__ = [
    "KINDS",
    "CollectorError",
    "Source",
    "TrackingPlan",
    "add_source",
    "create_app",
    "hash_key",
    "list_sources",
    "load_tracking_plans",
]
