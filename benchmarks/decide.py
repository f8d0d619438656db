"""Benchmark: the decision API at a steady 1,000 requests/s and at saturation, beside a bare FastAPI endpoint.

Claims (issue 7, "Done when"): `POST /v1/decide` answers with p99 at most 5 ms at 1,000
requests/s on loopback, and saturates at no less than half the requests/s of a bare FastAPI
endpoint served with the same uvicorn settings and driven by the same client.

Data: the demo retailer (`jingzhun demo generate --persons N`, `demo load`, `pipeline`),
built once under --cache; each run serves a private copy with an API key and marketing
app-push consent granted to 30% of persons (so the `push` placement decides for real).
--distinct request bodies are pre-built from the workspace: home_banner 60%, product_page
20% (a product with related products), cart 10% (1-3 products), push 10%; identifiers
rotate through a phone typed with spaces, an e-mail, a cookie (anonymous_id), a member id
as user_id, a person id, and 10% cookies nobody has (the fallback: popular products).

Servers, one after the other: `jingzhun serve` itself (HTTP process + engine process, the
real after-load hooks), then a bare FastAPI app (`--serve-bare`: parse the same JSON body,
send back the decision `jingzhun serve` gave to the first request — the same size of
answer, without deciding), both under `uvicorn.run(..., workers=1, log_level="warning")`,
`jingzhun serve`'s call.

Load generator: its own process on uvloop with raw asyncio streams and pre-built request
bytes (no HTTP client library: httpx alone costs more CPU per request than the server).
1. Steady: open loop at --rate for --seconds after a 2 s warm-up. Requests are scheduled
   on a clock and each takes an idle keep-alive connection from a pool; latency counts from
   the scheduled time to the last byte of the answer, so queueing in the generator or the
   server counts (no coordinated omission). The achieved rate is answers / elapsed time.
   Each body is asked for the first time here: most answers are worked out ("misses").
2. Saturation: closed loop, --connections keep-alive connections each with --pipeline
   requests in flight (HTTP/1.1 pipelining: one write and one read buffer per round, the
   cheapest client we could write), for --seconds. The same bodies again: a person asking
   again on a placement gets the answer worked out the first time (`Decider._answer`,
   kept while the snapshot serves; caps, consent and quiet hours are still decided on
   every request). `answer_cache` gives the hits and misses of each phase.
Per phase, the server's CPU time per request (HTTP process; engine process writing the
decision log) is reported beside the rates.

THE MACHINE MATTERS: on 2 cores the generator, the HTTP process and the engine process
share them (and whatever else runs: `load_average_1m`), so saturation is bounded by the
generator's share too, for both servers alike; CPU microseconds per request do not depend
on who else runs.

Usage:
    python benchmarks/decide.py [--persons 20000] [--rate 1000] [--seconds 20] [--cache DIR] [--workspace DIR]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))  # this checkout's code, in the servers too (ENV), whatever is installed
ENV = {**os.environ, "JINGZHUN_LANG": "en", "PYTHONPATH": os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}

import collector as bench_collector  # noqa: E402 — free_port, wait_healthy, percentile, cpu_seconds
import pipeline as bench_pipeline  # noqa: E402 — the cached loaded demo

JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
PLACEMENTS = (("home_banner", 6), ("product_page", 2), ("cart", 1), ("push", 1))  # of every 10 requests
ID_KINDS = ("phone", "email", "anonymous_id", "user_id", "person_id")
CONSENT_SQL = """
INSERT INTO consents (person_id, purpose, channel, status, recorded_at)
SELECT person_id, 'marketing', 'app_push', 'granted', TIMESTAMPTZ '2026-01-01 00:00:00+00' FROM persons
WHERE status = 'active' AND hash(person_id) % 10 < 3
"""
SAMPLE_SQL = """
SELECT p.person_id, ANY_VALUE(ph.id_value) AS phone, ANY_VALUE(e.id_value) AS email,
       ANY_VALUE(a.id_value) AS anonymous_id, ANY_VALUE(m.id_value) AS member_id
FROM persons AS p
LEFT JOIN identities AS ph ON ph.person_id = p.person_id AND ph.id_type = 'phone'
LEFT JOIN identities AS e ON e.person_id = p.person_id AND e.id_type = 'email'
LEFT JOIN identities AS a ON a.person_id = p.person_id AND a.id_type = 'anonymous_id'
LEFT JOIN identities AS m ON m.person_id = p.person_id AND m.id_type = 'member_id'
WHERE p.status = 'active' GROUP BY p.person_id ORDER BY hash(p.person_id) LIMIT :n
"""


def log(message: str) -> None:
    sys.stderr.write(f"[decide] {message}\n")
    sys.stderr.flush()


# ---- the workspace --------------------------------------------------------------------------------


def portrayed_demo(persons: int, cache: Path) -> Path:
    """The loaded demo with the whole pipeline run (recommendations included), built once."""
    root = cache / f"portrayed-{persons}"
    if (root / ".portrayed").exists():
        return root
    loaded = bench_pipeline.prepared_demo(persons, cache, 1.8)
    shutil.rmtree(root, ignore_errors=True)
    bench_pipeline.private_copy(loaded, root)
    log(f"running the pipeline on {persons} persons (once; cached under {cache})")
    subprocess.run([JINGZHUN, "pipeline", "-w", str(root)], check=True, stdout=subprocess.DEVNULL, env=ENV)
    (root / ".portrayed").write_text("ok")
    return root


def prepared_copy(demo: Path, target: Path, distinct: int) -> tuple[str, list[bytes], dict]:
    """A private copy with an API key and consents; returns the key, the pre-built request bodies
    and what the workspace holds."""
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate
    from jingzhun.web import create_api_key

    bench_pipeline.private_copy(demo, target)
    workspace = open_workspace(target)
    with open_engine(workspace) as engine:
        migrate(engine)
        key = create_api_key(engine, "decide-bench", "viewer")[1]
        engine.execute(CONSENT_SQL)
        people = engine.query(SAMPLE_SQL.replace(":n", str(distinct))).to_pylist()
        products = engine.query("SELECT DISTINCT product_id FROM related_products ORDER BY product_id"
                                ).column("product_id").to_pylist()
        facts = engine.query("""SELECT (SELECT count(*) FROM persons WHERE status = 'active') AS persons,
            (SELECT count(*) FROM identities) AS identifiers, (SELECT count(*) FROM recommendations) AS recommendations,
            (SELECT count(*) FROM related_products) AS related_products,
            (SELECT count(*) FROM consents) AS consents_granted""").to_pylist()[0]
    return key, bodies(people, products, distinct), facts


def bodies(people: list[dict], products: list[str], count: int) -> list[bytes]:
    """`count` request bodies: the placement mix and the identifier rotation of the docstring."""
    placements = [name for name, share in PLACEMENTS for _ in range(share)]
    built = []
    for n in range(count):
        person = people[n % len(people)]  # a person comes back on another placement every len(people) bodies
        body: dict[str, object] = {"placement": placements[(n + n // len(people)) % len(placements)]}
        if (n // 10) % 10 == 9:  # independent digits of n: every placement gets unknown visitors and every kind of id
            body["anonymous_id"] = f"bench-new-cookie-{n}"
        else:
            body.update(who(person, ID_KINDS[(n // 100) % len(ID_KINDS)]))
        if body["placement"] == "product_page":
            body["product_id"] = products[(n * 7) % len(products)]
        elif body["placement"] == "cart":
            body["cart"] = [products[(n * 7 + k * 13) % len(products)] for k in range(1 + n % 3)]
        built.append(orjson.dumps(body))
    return built


def who(person: dict, kind: str) -> dict:
    """The person named by `kind` (as a caller would type it), else by person id."""
    if kind == "phone" and person["phone"]:
        digits = person["phone"].removeprefix("+86")
        return {"identifier": {"type": "phone", "value": f"{digits[:3]} {digits[3:7]} {digits[7:]}"}}
    if kind == "email" and person["email"]:
        return {"identifier": {"type": "email", "value": person["email"]}}
    if kind == "anonymous_id" and person["anonymous_id"]:
        return {"anonymous_id": person["anonymous_id"]}
    if kind == "user_id" and person["member_id"]:
        return {"user_id": person["member_id"]}
    return {"person_id": person["person_id"]}


def requests_bytes(port: int, key: str, payloads: list[bytes]) -> list[bytes]:
    """Whole HTTP/1.1 requests, so the generator does no work but write them."""
    head = (f"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\n")
    return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in payloads]


# ---- the bare ceiling -----------------------------------------------------------------------------


def bare_app(answer: bytes) -> FastAPI:
    """The ceiling: FastAPI reads and parses the same body and sends a decision of the same size
    without deciding (the answer the real server gave to the first request)."""
    app = FastAPI()

    @app.post("/v1/decide")
    async def decide(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert body["placement"]
        return Response(answer, media_type="application/json")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    return app


# ---- the load generator (its own process) ------------------------------------------------------


async def answer(reader: asyncio.StreamReader) -> None:
    """Read one response (status 200 required) to its last byte."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        body = await reader.read(2000)
        raise RuntimeError((head + body).decode(errors="replace"))
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)


async def steady(port: int, requests: list[bytes], rate: float, seconds: float, pool_size: int) -> dict:
    """Open loop: request n is due at start + n / rate; latency from that time to the last byte."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(pool_size):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    total = int(rate * seconds)
    latencies, from_write, lags = [0.0] * total, [0.0] * total, [0.0] * total
    done, failures = 0, []
    finished = asyncio.Event()

    async def one(n: int, due: float) -> None:
        nonlocal done
        reader, writer = await pool.get()
        written = time.perf_counter()
        writer.write(requests[n % len(requests)])
        try:
            await answer(reader)
        except Exception as failure:  # noqa: BLE001 — ends the phase; raised below
            failures.append(failure)
            finished.set()
            return
        ended = time.perf_counter()
        pool.put_nowait((reader, writer))
        latencies[n], from_write[n], lags[n] = ended - due, ended - written, written - due
        done += 1
        if done == total:
            finished.set()

    start = time.perf_counter() + 0.01
    tasks, n = set(), 0
    while n < total:
        due_now = min(total, int((time.perf_counter() - start) * rate) + 1)
        while n < due_now:
            task = asyncio.create_task(one(n, start + n / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
    await finished.wait()
    if failures:
        raise failures[0]
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    pct = bench_collector.percentile
    return {"target_rate": rate, "requests": total, "achieved_rate": round(total / elapsed, 1),
            "p50_ms": round(pct(latencies, 0.50) * 1000, 3), "p99_ms": round(pct(latencies, 0.99) * 1000, 3),
            "p999_ms": round(pct(latencies, 0.999) * 1000, 3), "max_ms": round(max(latencies) * 1000, 3),
            "p99_ms_from_write": round(pct(from_write, 0.99) * 1000, 3),
            "generator_lag_p99_ms": round(pct(lags, 0.99) * 1000, 3)}


async def saturate(port: int, requests: list[bytes], connections: int, depth: int, seconds: float) -> dict:
    """Closed loop: each connection writes `depth` requests at once, reads their answers, repeats."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset * depth
        while time.perf_counter() < stop_at:
            writer.write(b"".join(requests[(i + k) % len(requests)] for k in range(depth)))
            for _ in range(depth):
                await answer(reader)
            done += depth
            i += connections * depth
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    return {"requests": done, "seconds": round(elapsed, 2), "requests_per_s": round(done / elapsed, 1)}


def load_process(port: int, requests: list[bytes], args: argparse.Namespace, out: multiprocessing.Queue) -> None:
    """Warm up, run the steady phase, then saturation (telling the parent when it starts and ends)."""
    import uvloop

    try:
        uvloop.run(steady(port, requests, args.rate, 2.0, args.pool))  # warm-up: connections, caches
        out.put("steady-start")
        result = {"steady": uvloop.run(steady(port, requests, args.rate, args.seconds, args.pool))}
        out.put("steady-end")
        uvloop.run(saturate(port, requests, args.connections, args.pipeline, 1.0))
        out.put("saturation-start")
        result["saturation"] = uvloop.run(saturate(port, requests, args.connections, args.pipeline, args.seconds))
        out.put("saturation-end")
        result["generator_cpu_s"] = round(sum(os.times()[:2]), 2)
        out.put(result)
    except Exception as failure:  # noqa: BLE001 — reported to the parent, which stops the run
        out.put({"error": repr(failure)})


def measure(port: int, requests: list[bytes], args: argparse.Namespace, server_pid: int,
            probe: Callable[[], dict] | None = None) -> dict:
    """Run the generator; add the server's CPU time per request in each phase, and what `probe`
    (the decision API's cache counters) says at each phase's start and end."""
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = context.Queue()
    process = context.Process(target=load_process, args=(port, requests, args, out))
    process.start()
    marks: dict[str, dict[str, float]] = {}
    probes: dict[str, dict] = {}
    deadline = time.monotonic() + args.seconds * 4 + 180
    while time.monotonic() < deadline:
        try:
            result = out.get(timeout=1)
        except queue.Empty:
            if not process.is_alive():
                break
            continue
        if isinstance(result, str):
            marks[result] = bench_collector.cpu_seconds(server_pid)
            probes[result] = probe() if probe else {}
            continue
        process.join(30)
        if "error" in result:
            raise RuntimeError(f"the load generator failed: {result['error']}")
        for phase in ("steady", "saturation"):
            answered = result[phase]["requests"]
            for part in ("http_process", "other_processes"):
                used = marks[f"{phase}-end"][part] - marks[f"{phase}-start"][part]
                result[phase][f"cpu_us_per_request_{part}"] = round(used / answered * 1e6, 1)
            if probe:
                result[phase]["answer_cache"] = {key: probes[f"{phase}-end"][key] - probes[f"{phase}-start"][key]
                                                 for key in ("hits", "misses")}
        return result
    process.kill()
    raise RuntimeError("the load generator did not finish")


# ---- the two servers --------------------------------------------------------------------------------


def run_bare(args: argparse.Namespace, payloads: list[bytes], answer: Path) -> dict:
    port = bench_collector.free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port), "--answer", str(answer)], env=ENV)
    try:
        bench_collector.wait_healthy(f"http://127.0.0.1:{port}")
        return measure(port, requests_bytes(port, "none", payloads), args, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def run_decide(args: argparse.Namespace, workspace: Path, key: str, payloads: list[bytes], answer: Path) -> dict:
    """`jingzhun serve` on the copy; afterwards, what the decision log recorded. A typical answer
    (the first request's) is written to `answer`, for the bare endpoint to send."""
    port = bench_collector.free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([JINGZHUN, "serve", "-w", str(workspace), "--port", str(port)], env=ENV,
                              stdout=subprocess.DEVNULL)
    try:
        status = wait_ready(url, key)
        log(f"snapshot {status['snapshot']['version']}: {status['snapshot']['rows']}")
        sample = httpx.post(f"{url}/v1/decide", content=payloads[0], headers=auth(key), timeout=30)
        answer.write_bytes(sample.content)
        result = measure(port, requests_bytes(port, key, payloads), args, server.pid,
                         lambda: httpx.get(f"{url}/api/v1/decide/status", headers=auth(key), timeout=30).json()["answers"])
        result["snapshot_rows"] = status["snapshot"]["rows"]
        result["decision_log"] = httpx.get(f"{url}/api/v1/decide/status", headers=auth(key)).json()["log"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(180)
    result.update(logged(workspace))
    return result


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_ready(url: str, key: str) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/api/v1/decide/status", headers=auth(key), timeout=30).json()
            if status.get("ready"):
                return status
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the decision API did not get its first snapshot in 5 minutes")


def logged(workspace: Path) -> dict:
    """The decision log after the run: outcomes, and the Decider's own time per decision."""
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine

    with open_engine(open_workspace(workspace), read_only=True) as engine:
        outcomes = engine.query("SELECT placement, outcome, count(*) AS n FROM decisions GROUP BY ALL "
                                "ORDER BY placement, n DESC").to_pylist()
        inside = engine.query("SELECT quantile_cont(latency_us, 0.5) AS p50, quantile_cont(latency_us, 0.99) AS p99, "
                              "count(*) AS n FROM decisions").to_pylist()[0]
    by_placement: dict[str, dict[str, int]] = {}
    for row in outcomes:
        by_placement.setdefault(row["placement"], {})[row["outcome"]] = row["n"]
    return {"logged_decisions": inside["n"], "outcomes": by_placement,
            "decider_only_us": {"p50": round(inside["p50"] or 0, 1), "p99": round(inside["p99"] or 0, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0, help="steady requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady and saturation phases")
    parser.add_argument("--pool", type=int, default=64, help="keep-alive connections of the steady phase")
    parser.add_argument("--connections", type=int, default=8, help="connections at saturation")
    parser.add_argument("--pipeline", type=int, default=8, help="requests in flight per connection at saturation")
    parser.add_argument("--distinct", type=int, default=20000, help="distinct pre-built requests")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "jingzhun-bench-decide")
    parser.add_argument("--workspace", type=Path, help="a demo workspace the pipeline ran on (copied), instead of "
                                                         "building one of --persons")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--answer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(bare_app(args.answer.read_bytes()), host="127.0.0.1", port=args.serve_bare, log_level="warning", workers=1,
                    timeout_graceful_shutdown=30)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    demo = args.workspace or portrayed_demo(args.persons, args.cache)
    with tempfile.TemporaryDirectory(dir=args.cache) as scratch:
        key, payloads, facts = prepared_copy(demo, Path(scratch) / "ws", args.distinct)
        answer = Path(scratch) / "answer.json"
        log("jingzhun serve: POST /v1/decide")
        ours = run_decide(args, Path(scratch) / "ws", key, payloads, answer)
        log("bare FastAPI endpoint")
        bare = run_bare(args, payloads, answer)
        bare["answer_bytes"] = len(answer.read_bytes())
    ratio = ours["saturation"]["requests_per_s"] / bare["saturation"]["requests_per_s"]
    report = {
        "benchmark": "decide", "cpus": os.cpu_count(), "workers": 1, "workspace": {"demo": str(demo), **facts},
        "machine_note": (f"{os.cpu_count()} cores shared by the load generator (one process), the HTTP process and "
                         "the engine process (writing the decision log): saturation figures are bounded by the "
                         "generator's share as much as by the server; cpu_us_per_request does not depend on it"),
        "request_mix": {"placements": dict(PLACEMENTS), "identifiers": list(ID_KINDS), "unknown_cookie_share": 0.1},
        "steady_connections": args.pool, "saturation_connections": args.connections,
        "saturation_pipeline_depth": args.pipeline, "seconds": args.seconds,
        "jingzhun_decide": ours, "bare_fastapi": bare,
        "saturation_ratio_of_bare": round(ratio, 3),
        "target": {"p99_ms_at_1000_per_s": 5.0, "saturation_ratio_of_bare": 0.5},
        "meets_target": ours["steady"]["p99_ms"] <= 5.0 and ratio >= 0.5
        and ours["steady"]["achieved_rate"] >= 0.98 * args.rate,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
