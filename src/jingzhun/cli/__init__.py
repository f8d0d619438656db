"""`jingzhun …`: the command line, a thin shell over the stages' public functions.

Every command takes `--workspace` (default: JINGZHUN_WORKSPACE, then the current
folder). Errors jingzhun raises on purpose are printed as one message with the fix,
in the user's language, never as a traceback. Each module here registers its
commands on the shared `app` when imported.
"""

from __future__ import annotations

import sys

import duckdb

from jingzhun.cli import (
    analytics_basket,  # noqa: F401  (registers report rules|cross-sell|lineup|bundles|fans-vs-buyers|compare-audiences|source-value)
    analytics_behaviour,  # noqa: F401  (registers report funnel|retention|paths|seasonality|hypotheses)
    analytics_cube,  # noqa: F401  (registers report cube|compare|root-cause)
    campaigns,  # noqa: F401  (registers campaign create|list|run|results|pause|resume)
    collector,  # noqa: F401
    content,  # noqa: F401  (registers template list|preview, coupon issue|redemptions)
    decisions,  # noqa: F401  (registers decide)
    demo_load,  # noqa: F401  (registers demo load)
    foundation,  # noqa: F401  (registers init, migrate, pipeline, sql, demo)
    identity,  # noqa: F401  (registers identity bind|unbind|unmerge|erase|review|decide)
    imports,  # noqa: F401
    journeys,  # noqa: F401  (registers journey create|list|run|status|pause|resume)
    leads,  # noqa: F401  (registers lead score|assign|list|outcome)
    measure,  # noqa: F401  (registers measure kpis|lift|plan|attribution|budget|alerts)
    profiles,  # noqa: F401  (registers profile, tag list|apply)
    recommend,  # noqa: F401  (registers recommend for|related|evaluate)
    reports,  # noqa: F401  (registers report)
    segments,  # noqa: F401  (registers segment list|create|preview|snapshot|changes|export|overlap|cluster|lookalike|insight)
    web,  # noqa: F401  (registers user add|list|passwd|disable, apikey create|list|revoke)
)
from jingzhun.cli.common import app, errors
from jingzhun.core import JingzhunError, current_language, t


def main() -> None:
    """Console-script entry point: turn jingzhun's errors into one clear message."""
    try:
        try:
            app()
        except duckdb.IOException as failure:  # the database is locked: name who holds it and what to use
            raise web.database_in_use(failure, sys.argv) or failure from None
    except JingzhunError as problem:
        errors.print(f"[bold red]{t('error.title')}:[/] {problem.describe(current_language())}",
                     highlight=False, markup=True)
        raise SystemExit(2) from None
