"""Orchestrates the demo generator: builds the truth, then lets each source family write.

`make_context` is the one way to get a fully built `DemoContext` (population,
catalogue, stores); `generate_demo` adds the writers of every source family and
the ground truth files, and times the run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from jingzhun.demo.audiences import write_demo_audiences
from jingzhun.demo.catalog import build_catalog
from jingzhun.demo.context import DemoContext, DemoFile, ProgressCallback
from jingzhun.demo.geo import build_stores
from jingzhun.demo.people import build_population

log = logging.getLogger(__name__)

DEFAULT_START = date(2024, 11, 1)
DEFAULT_END = date(2026, 10, 31)


@dataclass
class DemoSummary:
    """What a `generate_demo` run wrote and how long it took."""

    files: list[DemoFile]
    persons: int
    seconds: float

    def counts_by_source(self) -> dict[str, int]:
        """Data rows per source (summed over the source's files)."""
        counts: Counter[str] = Counter()
        for f in self.files:
            counts[f.source] += f.rows
        return dict(counts)


def make_context(
    out_dir: Path,
    persons: int,
    seed: int,
    start: date = DEFAULT_START,
    end: date = DEFAULT_END,
    progress: ProgressCallback | None = None,
    views_per_visit: float = 1.8,
) -> DemoContext:
    """Build stores, catalogue and population into a context (writes nothing).

    Example:
        >>> ctx = make_context(Path("/tmp/x"), 100, 1)
        >>> ctx.population.size, ctx.stores.num_rows > 20
        (100, True)
    """
    if persons < 1:
        raise ValueError(f"Invalid value for `persons`: {persons}. Must be at least 1.")
    if end <= start:
        raise ValueError(f"Invalid period {start}..{end}: `end` must be after `start`.")
    if views_per_visit < 1:
        raise ValueError(f"Invalid value for `views_per_visit`: {views_per_visit}. Must be at least 1.")
    stores = build_stores(seed)
    ctx = DemoContext(out_dir=Path(out_dir), seed=seed, start=start, end=end,
                      population=build_population(persons, seed, start, end, stores),
                      catalog=build_catalog(seed, start, end), stores=stores,
                      progress=progress, views_per_visit=views_per_visit)
    ctx.report("people", persons, persons)
    return ctx


def generate_demo(
    out_dir: Path,
    persons: int = 20000,
    seed: int = 42,
    start: date = DEFAULT_START,
    end: date = DEFAULT_END,
    progress: ProgressCallback | None = None,
    views_per_visit: float = 1.8,
) -> DemoSummary:
    """Write every demo source under out_dir/data, the truth under out_dir/demo-truth and
    the demo's audiences under out_dir/definitions/segments.

    Does not create the workspace config (the CLI does). Same arguments give
    byte-identical files. `views_per_visit` sets browsing depth: the default gives
    about 11 events per person; about 20 gives the ~50 a benchmark of a busier site
    wants, without changing visits, orders or any other source.
    """
    began = time.perf_counter()
    ctx = make_context(out_dir, persons, seed, start, end, progress, views_per_visit)
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    ctx.truth_dir.mkdir(parents=True, exist_ok=True)
    files = _write_all(ctx)
    write_demo_audiences(ctx.out_dir, ctx.start, ctx.end)
    seconds = time.perf_counter() - began
    log.info("demo: %d persons, %d files in %.1f s", persons, len(files), seconds)
    return DemoSummary(files=files, persons=persons, seconds=seconds)


def _write_all(ctx: DemoContext) -> list[DemoFile]:
    """Run each source family's writer in a fixed order, the ground truth last.

    Writers may add the true parameters of the patterns they plant to
    `ctx.shared["patterns"]` (a dict keyed by pattern name); `write_truth` saves
    them all to demo-truth/patterns.json.
    """
    from jingzhun.demo import behaviour, commerce, crm, truth, writers
    from jingzhun.demo.marketing import write_marketing_sources

    ctx.shared.setdefault("patterns", {})
    files: list[DemoFile] = []
    ctx.shared["background"] = True  # big CRM workbooks are written by a child process
    jobs: list[crm.XlsxJob] = ctx.shared.setdefault("background_jobs", [])  # type: ignore[assignment]
    try:
        for writer in (writers.write_catalog_sources, crm.write_crm_sources,
                       behaviour.write_behaviour_sources, commerce.write_commerce_sources,
                       write_marketing_sources):
            files += writer(ctx)
    except BaseException:
        for job in jobs:
            job.cancel()
        raise
    for job in jobs:
        job.result()  # waits; raises if the background writer failed
    truth.write_truth(ctx, files)
    return files
