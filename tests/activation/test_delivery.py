"""Delivery adapters against real servers on 127.0.0.1 (aiosmtpd, an HTTP gateway), the ad
audience file, tracked-link tokens, and the hook that turns clicks and opens into
`message_events`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from jingzhun.activation.delivery import (
    DeliveryError,
    FileExportAdapter,
    FileSettings,
    Outgoing,
    SmtpAdapter,
    SmtpSettings,
    WebhookAdapter,
    WebhookSettings,
    addresses_for,
    load_delivery_config,
    webhook_signature,
)
from jingzhun.activation.tracking import LinkTracker, record_message_events
from jingzhun.collect.collector.tracking import (
    EMAIL_OPENED,
    LINK_CLICKED,
    TRACKING_SOURCE_ID,
    UNSUBSCRIBED,
    read_token,
    sign_token,
    tracking_secret,
)
from jingzhun.core import Workspace
from jingzhun.core.errors import ConfigError
from jingzhun.engine import DuckDBEngine, parse_sql
from jingzhun.schema import migrate
from tests.activation.campaign_fixtures import SmtpSink, WebhookReceiver, free_port
from tests.activation.policy_dataset import PEOPLE, load_policy_world


def message(n: int = 1, **changes: object) -> Outgoing:
    base = {"delivery_id": hashlib.md5(f"d{n}".encode()).hexdigest(), "campaign_id": "spring",
            "person_id": f"P0{n}", "channel": "email", "address": f"p0{n}@example.com",
            "title": "王女士，您的专属福利", "body": "王女士，您好：\n\n新品在此：https://t.example/t/c/abc\n",
            "language": "zh", "content_hash": "h" * 64, "open_pixel_url": "https://t.example/t/o/xyz.gif",
            "unsubscribe_url": "https://t.example/t/u/uvw"}
    return Outgoing(**{**base, **changes})


# ---- SMTP --------------------------------------------------------------------------------------


def test_smtp_sends_text_and_html_with_the_open_pixel() -> None:
    sink = SmtpSink()
    adapter = SmtpAdapter(SmtpSettings(adapter="smtp", host="127.0.0.1", port=sink.port, security="plain",
                                       from_address="news@shop.example.com", from_name="演示零售"))
    try:
        outcomes = [adapter.send(message(1)), adapter.send(message(2))]  # one connection for both
    finally:
        adapter.close()
        sink.close()
    assert [o.ok for o in outcomes] == [True, True]
    (recipients, mail), _ = sink.messages
    assert recipients == ["p01@example.com"]
    assert mail["Subject"] == "王女士，您的专属福利" and "演示零售" in mail["From"]
    assert mail["X-Jingzhun-Delivery"] == message(1).delivery_id
    assert mail["List-Unsubscribe"] == "<https://t.example/t/u/uvw>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "新品在此" in text and '<img src="https://t.example/t/o/xyz.gif"' in html
    assert '<a href="https://t.example/t/c/abc">' in html


def test_smtp_starttls_and_login(tmp_path: Path) -> None:
    logins = []

    def authenticate(server, session, envelope, mechanism, data: LoginPassword) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"pw")

    sink = SmtpSink(tmp_path, tls=True, authenticator=authenticate)
    settings = SmtpSettings(adapter="smtp", host="127.0.0.1", port=sink.port, security="starttls", username="mk",
                            ca_file=str(sink.cert), from_address="news@shop.example.com")
    adapter = SmtpAdapter(settings, password="pw")
    refused = SmtpAdapter(settings.model_copy(update={"ca_file": None}), password="pw")
    try:
        assert adapter.send(message(1)).ok
        untrusted = refused.send(message(2))  # a self-signed certificate is not trusted by default
    finally:
        adapter.close()
        sink.close()
    assert logins == [(b"mk", b"pw")] and len(sink.messages) == 1
    assert not untrusted.ok and "CERTIFICATE" in untrusted.error.upper()


def test_smtp_server_down_is_a_failed_outcome() -> None:
    adapter = SmtpAdapter(SmtpSettings(adapter="smtp", host="127.0.0.1", port=free_port(), security="plain",
                                       from_address="a@b.cn", timeout=2))
    outcome = adapter.send(message(1))
    assert not outcome.ok and "Connection" in outcome.error


# ---- webhook ----------------------------------------------------------------------------------


def webhook(receiver: WebhookReceiver, **changes: object) -> WebhookAdapter:
    settings = WebhookSettings(adapter="webhook", url=receiver.url, backoff=0.01, **changes)
    return WebhookAdapter(settings, receiver.secret)


def test_webhook_signs_and_carries_the_idempotency_key() -> None:
    receiver = WebhookReceiver()
    try:
        outcome = webhook(receiver).send(message(1, channel="sms", address="+8613800000001"))
    finally:
        receiver.close()
    assert outcome.ok and outcome.provider_id == "gw-1" and receiver.bad_signatures == 0
    (post,) = receiver.posts
    assert post["key"] == message(1).delivery_id == post["delivery_id"]
    assert post["to"] == "+8613800000001" and post["body"].startswith("王女士")


def test_webhook_retries_server_errors_then_succeeds() -> None:
    receiver = WebhookReceiver(fail_first=2)
    try:
        outcome = webhook(receiver).send(message(1))
    finally:
        receiver.close()
    assert outcome.ok and outcome.attempts == 3
    assert [p["key"] for p in receiver.posts] == [message(1).delivery_id] * 3  # one key for every try
    assert len(receiver.delivered) == 1


def test_webhook_gives_up_on_a_refusal_and_after_its_retries() -> None:
    refusing = WebhookReceiver(status_after_failures=400)
    busy = WebhookReceiver(fail_first=10)
    try:
        refused = webhook(refusing, retries=3).send(message(1))
        exhausted = webhook(busy, retries=2).send(message(1))
    finally:
        refusing.close()
        busy.close()
    assert (refused.ok, refused.attempts, refused.error[:8]) == (False, 1, "HTTP 400")
    assert (exhausted.ok, exhausted.attempts, len(busy.posts)) == (False, 3, 3)


def test_webhook_retries_timeouts_and_refused_connections() -> None:
    slow = WebhookReceiver(delay=1.0)
    try:
        timed_out = webhook(slow, timeout=0.2, retries=1).send(message(1))
    finally:
        slow.close()
    assert not timed_out.ok and "Timeout" in timed_out.error and timed_out.attempts == 2
    nobody = WebhookAdapter(WebhookSettings(adapter="webhook", url=f"http://127.0.0.1:{free_port()}/x",
                                            backoff=0, retries=1), "s")
    assert "ConnectError" in nobody.send(message(1)).error


def test_a_receiver_can_check_the_signature_itself() -> None:
    body, stamp = b'{"a": 1}', "1700000000"
    expected = __import__("hmac").new(b"k", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k", stamp, body) == expected
    with pytest.raises(DeliveryError, match="signing secret"):
        WebhookAdapter(WebhookSettings(adapter="webhook", url="http://127.0.0.1:1/x"), None)


# ---- configuration ----------------------------------------------------------------------------


def test_delivery_config_errors_name_the_key(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    path = workspace.definitions_dir / "delivery.yaml"
    path.write_text("channels:\n  sms: {adapter: webhook, url: 'http://x', secret_env: NOPE, retrys: 2}\n")
    with pytest.raises(ConfigError) as bad:
        load_delivery_config(workspace)
    assert bad.value.field == "channels.sms.retrys" and "`retries`" in bad.value.fix
    path.write_text("channels:\n  sms: {adapter: webhook, url: 'http://x', secret_env: JZ_TEST_SMS}\n")
    monkeypatch.delenv("JZ_TEST_SMS", raising=False)
    settings = load_delivery_config(workspace).channels["sms"]
    with pytest.raises(DeliveryError, match="JZ_TEST_SMS"):
        settings.secret(workspace, "secret")
    monkeypatch.setenv("JZ_TEST_SMS", "s3")
    assert settings.secret(workspace, "secret") == "s3"


# ---- the ad audience file ---------------------------------------------------------------------


def test_file_export_hashes_the_11_digit_number(tmp_path: Path, workspace: Workspace) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    load_policy_world(engine)
    people = ["P01", "P04", "P05", "P09"]  # P05 has no phone; P09's is no mainland mobile
    rows = parse_sql("SELECT d AS delivery_id, d AS person_id FROM (VALUES " +
                     ", ".join(f"('{p}')" for p in people) + ") AS v(d)")
    adapter = FileExportAdapter(FileSettings(adapter="file", folder="exports", hashes=("md5", "sha256")), workspace)
    md5_file, sha_file = adapter.export(engine, addresses_for(rows, ("phone",)), "spring", "once")
    engine.close()
    national = [PEOPLE[p][0][3:] for p in ("P01", "P04")]
    assert md5_file.read_text().split() == sorted(hashlib.md5(n.encode()).hexdigest() for n in national)
    assert sha_file.read_text().split() == sorted(hashlib.sha256(n.encode()).hexdigest() for n in national)
    assert md5_file.name == "spring-once-md5.txt" and len(national[0]) == 11


# ---- tracked links ----------------------------------------------------------------------------


def test_tokens_are_signed_and_short(workspace: Workspace) -> None:
    secret = tracking_secret(workspace)
    assert tracking_secret(workspace) == secret and len(secret) == 32
    delivery = hashlib.md5(b"x").hexdigest()
    tracker = LinkTracker("https://t.brand.cn/", secret, "spring")
    link = tracker.link(delivery, "https://shop.example.com/p/1?utm=sms")
    token = link.rsplit("/", 1)[1]
    assert link.startswith("https://t.brand.cn/t/c/") and len(token) < 90
    assert read_token(secret, token) == {"k": "click", "d": delivery, "c": "spring",
                                         "u": "https://shop.example.com/p/1?utm=sms"}
    opened = tracker.pixel(delivery).rsplit("/", 1)[1].removesuffix(".gif")
    assert read_token(secret, opened) == {"k": "open", "d": delivery, "c": "spring"}
    leaving = tracker.unsubscribe(delivery)
    assert leaving.startswith("https://t.brand.cn/t/u/")
    assert read_token(secret, leaving.rsplit("/", 1)[1]) == {"k": "unsubscribe", "d": delivery, "c": "spring"}
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert read_token(secret, tampered) is None
    assert read_token(b"another secret" * 2, token) is None
    assert read_token(secret, "not-a-token") is None
    assert tracker.link(delivery, "mailto:a@b.cn") == "mailto:a@b.cn"  # only http(s) is tracked
    with pytest.raises(ValueError):
        sign_token(secret, delivery, "spring", "javascript:alert(1)")


def test_clicks_opens_and_unsubscribes_are_recorded_once(tmp_path: Path, workspace: Workspace) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    migrate(engine)
    engine.execute("INSERT INTO deliveries (delivery_id, campaign_id, person_id, channel, status) "
                   "VALUES ('d1', 'spring', 'P01', 'email', 'sent')")
    at = datetime(2026, 11, 1, 3, tzinfo=UTC)

    def event(message_id: str, name: str, delivery: str, source: str = TRACKING_SOURCE_ID) -> dict:
        return {"message_id": message_id, "type": "track", "event": name, "timestamp": at, "source_id": source,
                "properties": f'{{"delivery_id": "{delivery}", "campaign_id": "spring", "url": "https://x.cn"}}'}

    events = pa.Table.from_pylist([
        event("m1", LINK_CLICKED, "d1"), event("m2", EMAIL_OPENED, "d1"),
        event("m3", LINK_CLICKED, "unknown-delivery"),  # no such delivery: nothing to record
        event("m4", LINK_CLICKED, "d1", source="src_web"),  # an SDK cannot forge a click
        {**event("m5", "Product Viewed", "d1")},
        event("m6", UNSUBSCRIBED, "d1"),
    ])
    assert record_message_events(workspace, engine, events) == 3
    assert record_message_events(workspace, engine, events) == 0  # a replayed batch adds nothing
    rows = engine.query("SELECT message_event_id, delivery_id, person_id, event_type FROM message_events "
                        "ORDER BY event_type").to_pylist()
    consents = engine.query("SELECT person_id, purpose, channel, status, recorded_at, source_id, evidence "
                            "FROM consents").to_pylist()
    engine.close()
    assert rows == [{"message_event_id": "ev:m1", "delivery_id": "d1", "person_id": "P01", "event_type": "clicked"},
                    {"message_event_id": "ev:m2", "delivery_id": "d1", "person_id": "P01", "event_type": "opened"},
                    {"message_event_id": "ev:m6", "delivery_id": "d1", "person_id": "P01",
                     "event_type": "unsubscribed"}]
    assert consents == [{"person_id": "P01", "purpose": "marketing", "channel": "email", "status": "withdrawn",
                         "recorded_at": at, "source_id": TRACKING_SOURCE_ID,
                         "evidence": '{"delivery_id": "d1", "message_id": "m6"}'}]
