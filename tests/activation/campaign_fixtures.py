"""Real receivers on 127.0.0.1 and a campaign-ready demo workspace, for the campaign tests.

- `WebhookReceiver`: an HTTP gateway that checks each call's HMAC signature, answers as
  scripted (500s, delays) and, like a real SMS gateway, delivers a message once per
  idempotency key however often it is posted.
- `SmtpSink`: an aiosmtpd server (plain, or STARTTLS with a self-signed certificate).
- `prepare_workspace`: templates, settings, delivery and policy files, consents,
  suppressions and earlier sends in a copy of the demo, so every policy rule has someone
  to exclude.
- `assert_policy_respected`: the send policy re-checked independently, from raw rows, for
  every message that went out.
- `Collector`: the collector app under uvicorn in a thread, with chosen after-load hooks.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from aiosmtpd.controller import Controller

from jingzhun.activation.policy import SendPolicy
from jingzhun.core import Workspace
from jingzhun.engine import Engine
from tests.collect.collector.conftest import free_port

WEBHOOK_SECRET = "whsec-test-不要外传"
TEMPLATE = """id: welcome_back
name: {zh: 好久不见, en: Welcome back}
products: {source: none}
link: "{{ site_url }}/welcome-back?c=1"
channels:
  sms:
    zh: {body: "{{ person.greeting }}，好久不见，回来看看：{{ url }}"}
    en: {body: "Hi {{ person.greeting }}, come back: {{ url }}"}
  email:
    zh:
      title: "{{ person.greeting }}，好久不见"
      body: "{{ person.greeting }}，您好：\\n\\n我们为您准备了新品，点此查看：{{ url }}\\n"
    en:
      title: "{{ person.greeting }}, welcome back"
      body: "Hi {{ person.greeting }},\\n\\nNew arrivals are waiting: {{ url }}\\n"
"""
SETTINGS = """brand: {zh: 演示零售, en: Demo Retail}
sms_signature: {zh: 演示零售, en: Demo Retail}
site_url: https://shop.example.com
unsubscribe_url: https://shop.example.com/unsubscribe
sms_max_parts: 3
"""


# ---- the webhook gateway ---------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """A signature-checking, deduplicating gateway on 127.0.0.1 (a real HTTP server)."""

    secret: str = WEBHOOK_SECRET
    delay: float = 0.0
    fail_first: int = 0  # answer 500 to this many calls first
    status_after_failures: int = 200
    posts: list[dict] = field(default_factory=list)  # every call, duplicates included
    delivered: dict[str, dict] = field(default_factory=dict)  # idempotency key → message (once)
    bad_signatures: int = 0
    hold_at: int | None = None  # the n-th call waits until `release` is set

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.holding, self.release = threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.handle(self.headers, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"id": "gw-1"}' if status == 200 else b'{"error": "busy"}')
                except (BrokenPipeError, ConnectionResetError):  # the sender timed out and left
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/send"

    def handle(self, headers, body: bytes) -> int:
        stamp = headers.get("X-Jingzhun-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-Jingzhun-Signature", "")):
            with self._lock:
                self.bad_signatures += 1
            return 401
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            hold = self.calls == self.hold_at
        if hold:
            self.holding.set()
            self.release.wait(120)
        message = json.loads(body)
        key = headers.get("Idempotency-Key")
        with self._lock:
            self.posts.append({"key": key, **message})
            if len(self.posts) <= self.fail_first:
                return 500
            if self.status_after_failures != 200:
                return self.status_after_failures
            self.delivered.setdefault(key, message)
        return 200

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---- the SMTP server ---------------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.delay = 0.0  # seconds before accepting each message (a slow server)
        self.hold_at: int | None = None  # the n-th message waits, mid-DATA, until `release` is set
        self.holding, self.release = threading.Event(), threading.Event()
        self.received = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 — aiosmtpd's API
        self.received += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.received == self.hold_at:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on 127.0.0.1; `tls=True` requires STARTTLS with a self-signed certificate."""

    def __init__(self, folder: Path | None = None, tls: bool = False, authenticator=None) -> None:
        import ssl

        self.handler = _Collect()
        self.port = free_port()
        options: dict[str, object] = {}
        self.cert: Path | None = None
        if tls:
            assert folder is not None
            self.cert, key = self_signed_certificate(folder)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)
            options = {"tls_context": context, "require_starttls": True}
        if authenticator is not None:
            options["authenticator"] = authenticator
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    @property
    def messages(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        return self.handler.messages

    def close(self) -> None:
        self.handler.release.set()
        self.controller.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl command line."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


# ---- the workspace ------------------------------------------------------------------------------


def write_definitions(workspace: Workspace, *, smtp_port: int | None, webhook_url: str | None,
                      tracking_url: str = "http://127.0.0.1:8080", policy: str | None = None) -> None:
    """Template, settings, delivery.yaml (secrets by environment variable) and send_policy.yaml."""
    templates = workspace.definitions_dir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "welcome_back.yaml").write_text(TEMPLATE, encoding="utf-8")
    (templates / "_settings.yaml").write_text(SETTINGS, encoding="utf-8")
    channels = []
    if smtp_port is not None:
        channels.append(f"  email: {{adapter: smtp, host: 127.0.0.1, port: {smtp_port}, security: plain, "
                        f"from_address: news@shop.example.com, from_name: 演示零售}}")
    if webhook_url is not None:
        channels.append(f"  sms: {{adapter: webhook, url: '{webhook_url}', secret_file: .jingzhun/sms_secret, "
                        f"backoff: 0.01, batch_size: 5}}")
    (workspace.root / ".jingzhun" / "sms_secret").write_text(WEBHOOK_SECRET, encoding="utf-8")
    (workspace.definitions_dir / "delivery.yaml").write_text(
        f"tracking: {{base_url: '{tracking_url}'}}\nchannels:" + ("\n" + "\n".join(channels) if channels else " {}")
        + "\n", encoding="utf-8")
    if policy is not None:
        (workspace.definitions_dir / "send_policy.yaml").write_text(policy, encoding="utf-8")


def campaign(campaign_id: str, channels: list[str], *, holdout: float = 0.2, segment: str = "valuable_at_risk",
             at: str = "2026-11-01T10:00:00+08:00", **extra: object) -> dict:
    return {"campaign_id": campaign_id, "name_zh": f"活动 {campaign_id}", "name_en": f"Campaign {campaign_id}",
            "audience": {"segment_id": segment}, "template_id": "welcome_back", "channels": channels,
            "schedule": {"kind": "once", "at": at}, "holdout": holdout, **extra}


@dataclass(frozen=True)
class Seeded:
    """Who the seeded rows make excluded, by rule (person ids)."""

    granted: set[str]
    withdrawn: set[str]
    suppressed: set[str]
    capped: set[str]


def seed_policy_rows(engine: Engine, segment: str = "valuable_at_risk", now: datetime | None = None) -> Seeded:
    """Consents (2 of 3 audience members granted, then a few withdrawn again), a suppressed
    phone and e-mail, and two earlier marketing SMS for a few (the 2-per-7-days cap)."""
    now = now or datetime(2026, 11, 1, 2, tzinfo=UTC)
    members = engine.query(f"SELECT DISTINCT person_id FROM segment_members WHERE segment_id = '{segment}' "
                           "ORDER BY person_id").column(0).to_pylist()
    assert len(members) >= 30, f"audience {segment} has {len(members)} members in this demo: too few to seed"
    granted = [p for i, p in enumerate(members) if i % 3 != 0]
    day = timedelta(days=1)
    rows = [(p, "marketing", None, "granted", now - 30 * day) for p in granted]
    withdrawn = granted[::7]
    rows += [(p, "marketing", "sms", "withdrawn", now - 2 * day) for p in withdrawn]
    values = ", ".join(f"('{p}', '{purpose}', {f'{chr(39)}{c}{chr(39)}' if c else 'NULL'}, '{s}', "
                       f"TIMESTAMPTZ '{at.isoformat()}')" for p, purpose, c, s, at in rows)
    engine.execute(f"INSERT INTO consents (person_id, purpose, channel, status, recorded_at) VALUES {values}")
    reachable = engine.query(
        "SELECT i.person_id, i.id_type, i.id_value FROM identities AS i "
        f"WHERE i.person_id IN ({', '.join(repr(p) for p in granted)}) AND i.id_type IN ('phone', 'email') "
        "ORDER BY i.person_id, i.id_type").to_pylist()
    phones = [r for r in reachable if r["id_type"] == "phone" and r["person_id"] not in withdrawn]
    mails = [r for r in reachable if r["id_type"] == "email"]
    suppressed_rows = phones[1:3] + mails[:1]
    capped = [r["person_id"] for r in phones[5:9]]
    assert len(suppressed_rows) == 3 and len(capped) == 4, "the audience is too small to seed every rule"
    engine.execute("INSERT INTO suppressions (id_type, id_value, channel, reason, created_at) VALUES " + ", ".join(
        f"('{r['id_type']}', '{r['id_value']}', NULL, 'complaint', TIMESTAMPTZ '{(now - day).isoformat()}')"
        for r in suppressed_rows))
    engine.execute("INSERT INTO deliveries (delivery_id, campaign_id, person_id, channel, status, sent_at, "
                   "scheduled_at, purpose) VALUES " + ", ".join(
                       f"('old-{p}-{k}', 'earlier', '{p}', 'sms', 'sent', TIMESTAMPTZ '{(now - (k + 1) * day).isoformat()}', "
                       f"TIMESTAMPTZ '{(now - (k + 1) * day).isoformat()}', 'marketing')" for p in capped for k in range(2)))
    return Seeded(set(granted), set(withdrawn), {r["person_id"] for r in suppressed_rows}, set(capped))


# ---- the policy, checked again from raw rows ------------------------------------------------------


def assert_policy_respected(engine: Engine, workspace: Workspace, policy: SendPolicy,
                            history: tuple[str, ...] = ("earlier",)) -> int:
    """Every marketing message that may have gone out (sent or unknown) had consent for its
    channel, no suppressed identifier, stayed within every frequency cap counting all
    campaigns (the seeded `history` too), and left outside quiet hours. Returns how many
    messages of the campaigns under test were checked."""
    went = engine.query("SELECT delivery_id, campaign_id, person_id, channel, sent_at, updated_at, status "
                        "FROM deliveries WHERE purpose = 'marketing' AND status IN ('sent', 'unknown')").to_pandas()
    if went.empty:
        return 0
    went["at"] = went["sent_at"].fillna(went["updated_at"])
    _assert_caps(went, policy, history)
    went = went[~went.campaign_id.isin(history)]
    consents = engine.query("SELECT person_id, channel, status, recorded_at FROM consents "
                            "WHERE purpose = 'marketing'").to_pandas()
    suppressed = engine.query(
        "SELECT DISTINCT i.person_id, s.channel FROM suppressions AS s JOIN identities AS i "
        "ON i.id_type = s.id_type AND i.id_value = s.id_value").to_pandas()
    zone = ZoneInfo(workspace.config.timezone)
    for row in went.itertuples():
        mine = consents[(consents.person_id == row.person_id) & (consents.recorded_at <= row.at)
                        & (consents.channel.isna() | (consents.channel == row.channel))]
        latest = mine.sort_values("recorded_at").iloc[-1] if len(mine) else None
        assert latest is not None and latest.status == "granted", f"no consent: {row}"
        blocked = suppressed[(suppressed.person_id == row.person_id)
                             & (suppressed.channel.isna() | (suppressed.channel == row.channel))]
        assert blocked.empty, f"suppressed: {row}"
        if policy.quiet_hours is not None and row.channel in policy.quiet_hours.channels:
            assert not policy.quiet_hours.covers(row.at.astimezone(zone).time()), f"quiet hours: {row}"
    return len(went)


def _assert_caps(went: pd.DataFrame, policy: SendPolicy, history: tuple[str, ...]) -> None:
    """No new send made its person's count within any cap's window (history included) exceed the cap."""
    for cap in policy.frequency_caps:
        scoped = went if cap.channel == "all" else went[went.channel == cap.channel]
        for person, sends in scoped.groupby("person_id"):
            times = sorted(sends["at"])
            for end in sorted(sends[~sends.campaign_id.isin(history)]["at"]):
                inside = [t for t in times if end - timedelta(days=cap.days) < t <= end]
                assert len(inside) <= cap.max_messages, f"{person} over the cap {cap}: {inside}"


def kill_when_held(command: list[str], *receivers) -> None:  # noqa: ANN001 — WebhookReceiver or _Collect
    """Run a `jingzhun` command and SIGKILL it once every receiver holds a message in flight
    (each receiver's `hold_at`); the receivers then let that message finish, its sender gone."""
    process = subprocess.Popen(command, env={**os.environ, "JINGZHUN_LANG": "en"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: all(r.holding.is_set() for r in receivers) or process.poll() is not None,
                 timeout=240, step=0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    for receiver in receivers:
        receiver.release.set()


def wait_for(condition, timeout: float = 60.0, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(step)


class Collector:
    """The collector app under uvicorn in a thread: a real HTTP server on 127.0.0.1 whose
    loader process runs `hooks` after each batch."""

    def __init__(self, workspace: Workspace, port: int, hooks: tuple[str, ...]) -> None:
        import uvicorn

        from jingzhun.collect.collector import create_app

        app = create_app(workspace, after_load=list(hooks))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Collector:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=120)
        return self

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=5).json()

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True  # the lifespan drains the log into `events`, hooks included
        self.thread.join(120)
