"""Measurement: how long every starter template's SMS is, for every person of the demo, with a
short tracked link (`{base}/s/{code}`) against the signed-token link (`/t/c/{token}`) side by side.

The claim (docs/content.md, "What the demo shows"): with short links the four product
templates (个性推荐, 猜你喜欢, 热门推荐, 新品上市) fit in 2 billed parts, where the signed
token took 3. Each person's SMS is rendered once, in zh and in en, by the campaign's own
tracker (`link_tracker`, so the codes are written to the copy's link map as a campaign
writes them); the token version of the same message is the same text with the short
link replaced by the token `/t/c/` gives for the same delivery and target — the link is
inserted verbatim, so its length is exact. Delivery ids are the campaign's
(MD5 of campaign:run:person:step). Also timed: the link map's commit (write + fsync) per
batch of 2,000 messages, and the collector's index over all the links written.

Usage:
    python benchmarks/sms_lengths.py --workspace PATH_TO_A_PORTRAYED_DEMO [--base https://t.jingzhun-demo.cn]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from jingzhun.activation import count_sms, install_starter_templates, load_template, render_messages
from jingzhun.activation.delivery import DeliveryConfig
from jingzhun.activation.tracking import link_tracker
from jingzhun.collect.collector.link_map import LinkMap, map_folder
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine

TEMPLATES = ("personal_picks", "exclusive_benefit", "guess_you_like", "trending", "new_arrivals", "flash_sale",
             "exclusive_discount")
BATCH = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--base", default="https://t.jingzhun-demo.cn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        print(json.dumps(measure(_copy(args.workspace, Path(scratch)), args.base), ensure_ascii=False, indent=1))


def _copy(source: Path, scratch: Path):  # noqa: ANN202 — a Workspace
    import shutil

    target = scratch / "ws"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("data", "demo-truth", "log"))
    (target / "log").mkdir(exist_ok=True)
    install_starter_templates(target, brand_zh="精准", brand_en="Jingzhun", site_url="https://www.jingzhun-demo.cn",
                              overwrite=True)
    return open_workspace(target)


def measure(workspace, base: str) -> dict:  # noqa: ANN001
    config = DeliveryConfig.model_validate({"tracking": {"base_url": base}})
    results: dict[str, dict] = {}
    commits: list[float] = []
    with open_engine(workspace) as engine:
        persons = engine.query("SELECT person_id FROM person_traits ORDER BY person_id").column(0).to_pylist()
        for template_id in TEMPLATES:
            template = load_template(workspace, template_id)
            for language in ("zh", "en"):
                tracker = link_tracker(workspace, config, f"sms_{template_id}")
                started = time.perf_counter()
                rows = _render(engine, workspace, template, persons, language, tracker, commits)
                results[f"{template_id}.{language}"] = _summary(rows, template, time.perf_counter() - started)
                print(template_id, language, results[f"{template_id}.{language}"], file=sys.stderr)
    index = LinkMap(map_folder(workspace))
    started = time.perf_counter()
    indexed = index.refresh()
    return {"persons": len(persons), "short_link_example": _example(workspace), "templates": results,
            "link_map": {"links": indexed, "index_seconds": round(time.perf_counter() - started, 3),
                         "index_bytes": index.nbytes,
                         "commit_seconds_per_batch_median": round(sorted(commits)[len(commits) // 2], 4),
                         "batch": BATCH}}


def _render(engine, workspace, template, persons, language, tracker, commits) -> list[tuple[int, int, int, int]]:  # noqa: ANN001
    """(short chars, short parts, token chars, token parts) of each person's SMS."""
    rows = []
    for start in range(0, len(persons), BATCH):
        batch = persons[start:start + BATCH]
        delivery = {p: hashlib.md5(f"{tracker.campaign_id}:once:{p}:main".encode()).hexdigest() for p in batch}
        made: dict[str, str] = {}

        def links(person: str, url: str, made: dict[str, str] = made, delivery: dict[str, str] = delivery) -> str:
            short = tracker.link(delivery[person], url, "sms")
            made[short] = tracker.link(delivery[person], url)  # the token for the same delivery and target
            return short

        messages = render_messages(engine, workspace, template, batch, channel="sms", language=language,
                                   campaign_id=tracker.campaign_id, links=links)
        begun = time.perf_counter()
        tracker.commit()
        commits.append(time.perf_counter() - begun)
        for message in messages:
            token_body = message.body
            for short, token in made.items():
                if short in token_body:
                    token_body = token_body.replace(short, token)
            short_count, token_count = count_sms(message.body), count_sms(token_body)
            rows.append((short_count.chars, short_count.parts, token_count.chars, token_count.parts))
    return rows


def _summary(rows: list[tuple[int, int, int, int]], template, seconds: float) -> dict:  # noqa: ANN001
    def span(values: list[int]) -> list[int]:
        return [min(values), max(values)]

    short_parts = [r[1] for r in rows]
    return {"messages": len(rows), "max_parts": template.channels["sms"].max_parts or 2,
            "short": {"chars": span([r[0] for r in rows]), "parts": span(short_parts)},
            "token": {"chars": span([r[2] for r in rows]), "parts": span([r[3] for r in rows])},
            "short_parts_histogram": {str(p): short_parts.count(p) for p in sorted(set(short_parts))},
            "seconds": round(seconds, 2)}


def _example(workspace) -> str:  # noqa: ANN001
    folder = map_folder(workspace)
    first = sorted(folder.glob("*.tsv"))[0].read_text(encoding="utf-8").splitlines()[0]
    return first


if __name__ == "__main__":
    main()
