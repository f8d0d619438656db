"""The livestream traffic spike: one evening, one new product, a flood of views.

On `catalog.spike_date` a livestream host features the spike product (launched
`SPIKE_LEAD_DAYS` earlier). Extra web/app visits — `SPIKE_FACTOR` times the
usual daily web+app visit volume — arrive 20:00-23:00, each a "Livestream Viewed"
followed by views of that one product, so "Product Viewed" on that day is
dominated by a single product_id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jingzhun.demo.catalog import spike_date
from jingzhun.demo.vectors import weighted_sample

if TYPE_CHECKING:
    from jingzhun.demo.context import DemoContext
    from jingzhun.demo.sessions import Sessions

SPIKE_FACTOR = 6.0  # extra web+app visits on the spike day / usual daily web+app visits
SPIKE_PERSONA_WEIGHT = np.array([2.0, 4.0, 0.5, 0.8, 0.5])  # who watches livestreams
SPIKE_CONVERSION = 0.10  # members' chance of ordering the item during the stream


def spike_day_offset(ctx: DemoContext) -> int:
    return (spike_date(ctx.start, ctx.end) - ctx.start).days


def spike_sku(ctx: DemoContext) -> int:
    return int(np.flatnonzero(ctx.catalog["is_spike"])[0])


def spike_sessions(ctx: DemoContext, normal: Sessions) -> Sessions:
    """Extra web/app visits on the spike evening, all about the spike product."""
    from jingzhun.demo.sessions import Sessions, churn_decay, persona_codes

    rng = ctx.rng("sessions.spike")
    pop = ctx.population
    day = spike_day_offset(ctx)
    n = _spike_volume(normal, day)
    signup = (pop["signup_date"] - np.datetime64(ctx.start, "D")).astype(np.int64)
    eligible = (pop["uses_web"] | pop["uses_app"]) & (signup <= day)
    days = np.full(pop.size, day)
    weight = (SPIKE_PERSONA_WEIGHT[persona_codes(pop)] * pop["activity"]
              * churn_decay(ctx, np.arange(pop.size), days) * eligible)
    person = weighted_sample(rng, weight, n)
    app = pop["uses_app"][person] & (~pop["uses_web"][person] | (rng.random(len(person)) < 0.7))
    member = np.asarray(pop["member_id"].is_valid())[person]
    second = (20 * 3600 + rng.gamma(2.0, 1800.0, len(person))).clip(max=86399)
    k = len(person)
    return Sessions(person, np.full(k, day, dtype=np.int32), second.astype(np.int32),
                    np.where(app, 1, 0).astype(np.int8), np.zeros(k, dtype=np.int8),
                    np.full(k, spike_sku(ctx), dtype=np.int32),
                    member & (rng.random(k) < SPIKE_CONVERSION), np.full(k, 2, dtype=np.int8))


def _spike_volume(normal: Sessions, day: int) -> int:
    """SPIKE_FACTOR x mean daily web+app visits over the 14 days before the spike."""
    before = (normal.day >= day - 14) & (normal.day < day) & (normal.channel <= 1)
    return int(round(SPIKE_FACTOR * before.sum() / 14))


def spike_info(ctx: DemoContext) -> dict[str, object]:
    """The spike's true parameters for patterns.json."""
    sku = spike_sku(ctx)
    return {
        "date": spike_date(ctx.start, ctx.end).isoformat(),
        "product_id": str(ctx.catalog["product_id"][sku]),
        "sku": str(ctx.catalog["sku"].to_pylist()[sku] if hasattr(ctx.catalog["sku"], "to_pylist")
                   else ctx.catalog["sku"][sku]),
        "launch_date": str(ctx.catalog["launch_date"][sku]),
        "extra_visits_factor": SPIKE_FACTOR,
        "hours_local": "20:00-23:00 (gamma-shaped after 20:00)",
        "channels": ["web", "app"],
    }
