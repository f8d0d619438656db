"""The REST API under `/api/v1`: one router per resource (routes/), dependencies in deps.py.

Room for the measure stage's routes (KPIs, lift, attribution, budget): add its router module
under routes/ (`measure.py`, prefix `/measure`) and list it in `ROUTERS` after `campaigns`.
"""

from __future__ import annotations

from fastapi import APIRouter

from jingzhun.web.api.routes import (
    analytics,
    api_keys,
    audiences,
    audit,
    auth,
    campaigns,
    console_catalog,
    console_measure,
    decide,
    imports,
    inventory,
    jobs,
    leads,
    persons,
    recommendations,
    sources,
    sql,
    tags,
    templates,
    users,
)

ROUTERS = (auth, persons, tags, audiences, campaigns, leads, templates, recommendations, decide, analytics, sql,
           sources, imports, inventory, jobs, users, api_keys, audit, console_catalog,
           console_measure)
api_router = APIRouter()
for module in ROUTERS:
    api_router.include_router(module.router)
