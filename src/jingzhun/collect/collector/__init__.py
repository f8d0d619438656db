"""The Segment-compatible HTTP collector: spec, durable log, loader, write keys, plans.

Public API: `create_app(workspace)` (the collector's FastAPI app), and for a server that
composes the collector with more (jingzhun.web, what `jingzhun serve` runs):
`collector_service`, `add_collector_routes`, `build_loader`; `add_source` / `list_sources`
(write keys), `load_tracking_plans`.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from jingzhun.collect.collector.hooks import hook_names
from jingzhun.collect.collector.tracking_plan import TrackingPlan, load_tracking_plans
from jingzhun.collect.collector.write_keys import (
    KINDS,
    CollectorError,
    Source,
    add_source,
    hash_key,
    list_sources,
)

if TYPE_CHECKING:
    from jingzhun.collect.collector.app import (
        CollectorState,
        add_collector_routes,
        build_loader,
        collector_service,
        create_app,
    )

# The app's names are imported on first use: FastAPI takes ~0.4 s to import, and most
# processes that import this package (the CLI, short links, write keys) serve nothing.
_APP_NAMES = frozenset({"CollectorState", "add_collector_routes", "build_loader", "collector_service",
                        "create_app"})


def __getattr__(name: str) -> object:
    if name in _APP_NAMES:
        return getattr(import_module("jingzhun.collect.collector.app"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KINDS",
    "CollectorError",
    "CollectorState",
    "add_collector_routes",
    "build_loader",
    "collector_service",
    "Source",
    "TrackingPlan",
    "add_source",
    "create_app",
    "hash_key",
    "hook_names",
    "list_sources",
    "load_tracking_plans",
]
