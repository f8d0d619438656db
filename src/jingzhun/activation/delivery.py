"""Delivery adapters: e-mail over SMTP, a signed webhook for SMS/WeChat/push gateways, file export.

`definitions/delivery.yaml` says which adapter serves each channel (docs/campaigns.md)::

    tracking: {base_url: https://t.brand.cn}     # the collector's public address
    # tracking: {base_url: https://t.brand.cn, short_url: https://s.brand.cn, short_links: all}
    channels:
      email: {adapter: smtp, host: smtp.brand.cn, port: 587, security: starttls,
              username: marketing, password_env: JINGZHUN_SMTP_PASSWORD, from_address: hi@brand.cn}
      sms:   {adapter: webhook, url: https://sms-gw.brand.cn/send, secret_env: JINGZHUN_SMS_SECRET}
      ads:   {adapter: file, folder: exports, hashes: [md5, sha256]}

Secrets never sit in the file: it names an environment variable (`*_env`) or a file
under the workspace (`*_file`, e.g. `.jingzhun/sms_secret`).

The base class owns the policy (one adapter call never raises: any failure becomes a
failed `Outcome` with the reason); each adapter fills `_send`. `RESENDS_SAFELY` says
what a crash between the call and the `sent` mark means: the webhook receiver dedups
on the idempotency key (the delivery id), so an interrupted message is sent again
(at-least-once on the wire, exactly once at the receiver); SMTP has no such key, so an
interrupted e-mail is marked `unknown` and never resent (at most once).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import os
import re
import smtplib
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlglot import exp

from jingzhun.activation.policy import Channel, PolicyError, literal, parsed_sql, usable_address_sql
from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.tags import read_yaml

if TYPE_CHECKING:  # httpx is imported by the webhook adapter, not by every jingzhun process
    import httpx

DELIVERY_FILE = "delivery.yaml"
DELIVERY_DOC = ConfigFile(f" in {DELIVERY_FILE}", f"{DELIVERY_FILE} 中", "docs/campaigns.md")
SIGNATURE_HEADER = "X-Jingzhun-Signature"
TIMESTAMP_HEADER = "X-Jingzhun-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class DeliveryError(PolicyError):
    """A delivery configuration is invalid or names a secret that is missing."""


# ---- configuration ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Secret(_Strict):
    def secret(self, workspace: Workspace, name: str) -> str | None:
        """The secret `name` from its environment variable or workspace file, if configured."""
        env, path = getattr(self, f"{name}_env", None), getattr(self, f"{name}_file", None)
        if env:
            value = os.environ.get(env)
            if value is None:
                raise DeliveryError(f"environment variable {env} (for {name}) is not set.", field=f"{name}_env",
                                    fix=f"export {env}=… before sending",
                                    message_zh=f"环境变量 {env}（{name}）未设置。", fix_zh=f"发送前先 export {env}=…")
            return value
        if path:
            return workspace.resolve(path).read_text(encoding="utf-8").strip()
        return None


class SmtpSettings(_Secret):
    """E-mail over SMTP: `plain` (a relay on the same host), `starttls` (587) or `ssl` (465)."""

    adapter: Literal["smtp"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["plain", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    ca_file: str | None = None  # a private CA to trust (tests, in-house relays)
    from_address: str = Field(pattern=r"^[^@ ]+@[^@ ]+$")
    from_name: str | None = None
    timeout: float = Field(30.0, gt=0)


class WebhookSettings(_Secret):
    """A JSON POST per message to an SMS / WeChat / push gateway, signed with HMAC-SHA256."""

    adapter: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = None
    secret_file: str | None = None
    timeout: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    backoff: float = Field(0.5, ge=0)  # seconds before the first retry; doubles each time
    batch_size: int = Field(20, ge=1, le=1000)


class FileSettings(_Strict):
    """An audience file for ad platforms: one hashed 11-digit mobile number per line."""

    adapter: Literal["file"]
    folder: str = "exports"
    hashes: tuple[Literal["md5", "sha256"], ...] = ("md5",)


AdapterSettings = Annotated[SmtpSettings | WebhookSettings | FileSettings, Field(discriminator="adapter")]


class TrackingSettings(_Strict):
    """Where tracked links point: the collector's public address, and the short links' base."""

    base_url: str = Field(pattern=r"^https?://")
    short_url: str | None = Field(None, pattern=r"^https?://")  # the brand's short domain; default base_url
    short_links: Literal["sms", "all"] = "sms"  # which channels' links become `{short_url}/s/{code}`


class DeliveryConfig(_Strict):
    """`definitions/delivery.yaml`."""

    tracking: TrackingSettings | None = None
    channels: dict[Channel, AdapterSettings] = Field(default_factory=dict)


def load_delivery_config(workspace: Workspace) -> DeliveryConfig:
    """The workspace's delivery configuration (empty when the file is absent)."""
    path = workspace.definitions_dir / DELIVERY_FILE
    if not path.is_file():
        return DeliveryConfig()
    data = read_yaml(path, ConfigError)
    try:
        return DeliveryConfig.model_validate(data or {})
    except ValidationError as invalid:
        raise _config_error(invalid.errors()[0], path) from None


_ADAPTER_MODELS: dict[str, type[BaseModel]] = {"smtp": SmtpSettings, "webhook": WebhookSettings, "file": FileSettings}


def _config_error(error: dict[str, Any], path: Path) -> ConfigError:
    """pydantic names a channel's keys under the adapter tag (`channels.sms.webhook.url`):
    drop the tag and judge the keys against that adapter's settings."""
    loc = tuple(error["loc"])
    if len(loc) > 3 and loc[0] == "channels" and loc[2] in _ADAPTER_MODELS:
        inner = config_error({**error, "loc": loc[3:]}, path, _ADAPTER_MODELS[str(loc[2])], DELIVERY_DOC)
        key = ".".join(str(part) for part in (*loc[:2], *loc[3:]))
        return ConfigError(inner.message.replace(f"`{inner.field}`", f"`{key}`"), fix=inner.fix, field=key,
                           location=path, message_zh=inner.message_zh.replace(f"`{inner.field}`", f"`{key}`"),
                           fix_zh=inner.fix_zh)
    return config_error(error, path, DeliveryConfig, DELIVERY_DOC)


# ---- messages and outcomes --------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message ready to go: who, where, what, and its idempotency key (the delivery id)."""

    delivery_id: str
    campaign_id: str
    person_id: str
    channel: str
    address: str
    title: str | None
    body: str
    fields: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    coupon_code: str | None = None
    content_hash: str | None = None
    open_pixel_url: str | None = None
    html: str | None = None  # e-mail: the HTML part (`body` is then the plain-text part)
    unsubscribe_url: str | None = None  # marketing: the tracked unsubscribe link (List-Unsubscribe)


@dataclass(frozen=True)
class Outcome:
    """What an adapter call did: sent (with the provider's id, if any) or failed with why."""

    ok: bool
    error: str | None = None
    provider_id: str | None = None
    attempts: int = 1


class DeliveryAdapter(ABC):
    """Sends messages of one channel. Subclasses fill `_send` (and `close` if they hold a connection)."""

    NAME: ClassVar[str] = "abstract"
    RESENDS_SAFELY: ClassVar[bool] = False
    BATCH_SIZE: ClassVar[int] = 1
    BULK: ClassVar[bool] = False  # writes its whole run at once from SQL (file export)

    @final
    def send(self, message: Outgoing) -> Outcome:
        """Send one message; never raises (a failure is an Outcome with the reason)."""
        try:
            return self._send(message)
        except Exception as failure:  # noqa: BLE001 — any adapter failure is that message's outcome
            return Outcome(False, f"{type(failure).__name__}: {failure}"[:500])

    @abstractmethod
    def _send(self, message: Outgoing) -> Outcome:
        """Deliver `message` to the provider."""

    def close(self) -> None:  # noqa: B027 — optional hook: most adapters hold nothing
        """Release connections."""

    def batch_size(self) -> int:
        return self.BATCH_SIZE


# ---- SMTP ----------------------------------------------------------------------------------------


class SmtpAdapter(DeliveryAdapter):
    """E-mail through an SMTP server; one connection reused for the whole run.

    Each message goes out as text and HTML (the HTML adds the open pixel). At most once:
    a crash after the server accepted a message but before it was marked sent leaves it
    `unknown`, never sent again (SMTP has no idempotency key a server would honour).
    """

    NAME = "smtp"
    RESENDS_SAFELY = False  # so the send loop marks one message `sending` at a time
    BATCH_SIZE = 20  # rendered together

    def __init__(self, settings: SmtpSettings, password: str | None = None) -> None:
        self.settings, self.password = settings, password
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file) if s.security != "plain" else None
        if s.security == "ssl":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                connection.starttls(context=context)
        if s.username:
            connection.login(s.username, self.password or "")
        return connection

    def _send(self, message: Outgoing) -> Outcome:
        email = self.compose(message)
        for attempt in (1, 2):  # a server may drop an idle connection between batches
            if self._connection is None:
                self._connection = self._connect()
            try:
                refused = self._connection.send_message(email)
            except smtplib.SMTPServerDisconnected:
                self._connection = None
                if attempt == 2:
                    raise
                continue
            if refused:
                return Outcome(False, f"recipient refused: {refused}")
            return Outcome(True, provider_id=email["Message-ID"])
        raise AssertionError("unreachable")

    def compose(self, message: Outgoing) -> EmailMessage:
        s = self.settings
        email = EmailMessage()
        email["From"] = formataddr((s.from_name, s.from_address)) if s.from_name else s.from_address
        email["To"] = message.address
        email["Subject"] = message.title or ""
        email["Message-ID"] = make_msgid(idstring=message.delivery_id[:16], domain=s.from_address.split("@")[1])
        email["X-Jingzhun-Delivery"] = message.delivery_id
        if message.unsubscribe_url:  # RFC 2369 / 8058: the inbox's own unsubscribe button, one click
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(message.body)
        email.add_alternative(email_html(message), subtype="html")
        return email

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
            self._connection = None


# A link ends at whitespace, a quote or CJK punctuation (Chinese copy puts no space before a URL's end).
_URL = re.compile(r"https?://[^\s<>\"'，。！？、；：）】」]+")


def email_html(message: Outgoing) -> str:
    """The message's HTML part, or its text as minimal HTML (paragraphs, links made
    clickable), with the open pixel last."""
    pixel = (f'<img src="{html.escape(message.open_pixel_url)}" width="1" height="1" alt="">'
             if message.open_pixel_url else "")
    given = message.html
    if given and given.strip():
        at = given.lower().rfind("</body>")
        return given[:at] + pixel + given[at:] if at >= 0 else given + pixel
    paragraphs = [_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', html.escape(block, quote=True))
                  .replace("\n", "<br>") for block in message.body.strip().split("\n\n")]
    paragraphs = [f"<p>{block}</p>" for block in paragraphs]
    lang = html.escape(message.language or "zh")
    return f'<!doctype html><html lang="{lang}"><body>{"".join(paragraphs)}{pixel}</body></html>'


# ---- webhook -------------------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`, hex: what a receiver recomputes to trust a call.

    Example:
        >>> webhook_signature("s", "1700000000", b"{}")[:16]
        'a9e04d0ab5b4b7f1'
    """
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookAdapter(DeliveryAdapter):
    """A JSON POST per message, signed, retried with exponential backoff on 5xx, 429 and timeouts.

    Headers: `Idempotency-Key` (the delivery id: a receiver that sees it twice sends once),
    `X-Jingzhun-Timestamp` (Unix seconds) and `X-Jingzhun-Signature: sha256=<hex>` over
    `timestamp + "." + body`, so a receiver can refuse forged or replayed calls.
    """

    NAME = "webhook"
    RESENDS_SAFELY = True

    def __init__(self, settings: WebhookSettings, secret: str | None) -> None:
        if not secret:
            raise DeliveryError(f"the webhook for {settings.url} has no signing secret.", field="secret_env",
                                fix="set secret_env (an environment variable) or secret_file in delivery.yaml",
                                message_zh=f"{settings.url} 的 webhook 没有签名密钥。",
                                fix_zh="在 delivery.yaml 中设置 secret_env（环境变量）或 secret_file")
        import httpx

        self.settings, self.secret = settings, secret
        self.client = httpx.Client(timeout=settings.timeout)

    def batch_size(self) -> int:
        return self.settings.batch_size

    def payload(self, message: Outgoing) -> bytes:
        return orjson.dumps({
            "delivery_id": message.delivery_id, "campaign_id": message.campaign_id,
            "person_id": message.person_id, "channel": message.channel, "to": message.address,
            "language": message.language, "title": message.title, "body": message.body,
            "fields": message.fields, "html": message.html, "coupon_code": message.coupon_code,
            "content_hash": message.content_hash, "unsubscribe_url": message.unsubscribe_url,
        })

    def _send(self, message: Outgoing) -> Outcome:
        import httpx

        body = self.payload(message)
        error = "not sent"
        for attempt in range(1, self.settings.retries + 2):
            if attempt > 1:
                time.sleep(self.settings.backoff * 2 ** (attempt - 2))
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: message.delivery_id,
                       TIMESTAMP_HEADER: stamp,
                       SIGNATURE_HEADER: "sha256=" + webhook_signature(self.secret, stamp, body)}
            try:
                response = self.client.post(self.settings.url, content=body, headers=headers)
            except httpx.TransportError as failure:  # timeouts, refused connections: worth a retry
                error = f"{type(failure).__name__}: {failure}"
                continue
            if response.status_code < 300:
                return Outcome(True, provider_id=_provider_id(response), attempts=attempt)
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500 and response.status_code != 429:
                return Outcome(False, error, attempts=attempt)  # the gateway refused this message
        return Outcome(False, error, attempts=self.settings.retries + 1)

    def close(self) -> None:
        self.client.close()


def _provider_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("id") or data.get("message_id") if isinstance(data, dict) else None
    return str(value) if value is not None else None


# ---- file export ---------------------------------------------------------------------------------

# The 11-digit mainland number inside an E.164 phone, as Tencent Ads (广点通) and Ocean Engine
# (巨量引擎) hash it — the same spelling identity's ad-platform hash links use
# (identity.identifiers.hash_forms_sql, the `national` form).
NATIONAL_PHONE = "SUBSTRING(a.address, 4)"

EXPORT_SQL = """
SELECT DISTINCT {hash}(national) AS hashed FROM (
  SELECT {national} AS national FROM ({addresses}) AS a
  WHERE a.address LIKE '+86%'
) AS n ORDER BY hashed"""


class FileExportAdapter(DeliveryAdapter):
    """Writes the run's recipients as hashed phone numbers, one per line, for upload to ad platforms.

    Bulk: the file is written from SQL (every queued, sending or sent delivery of the run),
    then the rows are marked sent; a rerun after a crash rewrites the same file.
    """

    NAME = "file"
    RESENDS_SAFELY = True
    BULK = True

    def __init__(self, settings: FileSettings, workspace: Workspace) -> None:
        self.settings, self.workspace = settings, workspace

    def _send(self, message: Outgoing) -> Outcome:  # pragma: no cover — bulk adapters export()
        raise DeliveryError("the file adapter exports whole runs; call export().")

    def export(self, engine: Engine, addresses: exp.Expression, campaign_id: str, run_id: str) -> list[Path]:
        """Write one file per hash kind from `addresses` (SELECT person_id, address); return the paths."""
        folder = self.workspace.resolve(self.settings.folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for kind in self.settings.hashes:
            query = parse_sql(EXPORT_SQL.format(hash=kind.upper(), national=NATIONAL_PHONE,
                                                addresses=addresses.sql("duckdb")))
            hashed = engine.query(query).column("hashed").to_pylist()
            target = folder / f"{campaign_id}-{run_id}-{kind}.txt"
            partial = target.with_suffix(".partial")
            partial.write_text("".join(f"{value}\n" for value in hashed), encoding="ascii")
            partial.replace(target)  # readers never see half a file
            written.append(target)
        return written


# ---- building adapters -----------------------------------------------------------------------------


def build_adapters(workspace: Workspace, config: DeliveryConfig, channels: tuple[str, ...]) -> dict[str, DeliveryAdapter]:
    """One adapter per channel the campaign uses, or an error naming the missing channel."""
    adapters: dict[str, DeliveryAdapter] = {}
    for channel in channels:
        settings = config.channels.get(channel)  # type: ignore[call-overload]
        if settings is None:
            raise DeliveryError(f"no delivery adapter is configured for channel {channel!r}.", field="channels",
                                fix=f"add channels.{channel} to definitions/{DELIVERY_FILE} (see docs/campaigns.md)",
                                message_zh=f"渠道 {channel!r} 没有配置发送方式。",
                                fix_zh=f"在 definitions/{DELIVERY_FILE} 中添加 channels.{channel}（见 docs/campaigns.md）")
        adapters[channel] = build_adapter(workspace, settings)
    return adapters


def build_adapter(workspace: Workspace, settings: SmtpSettings | WebhookSettings | FileSettings) -> DeliveryAdapter:
    if isinstance(settings, SmtpSettings):
        return SmtpAdapter(settings, settings.secret(workspace, "password"))
    if isinstance(settings, WebhookSettings):
        return WebhookAdapter(settings, settings.secret(workspace, "secret"))
    return FileExportAdapter(settings, workspace)


def addresses_for(delivery_ids: exp.Expression, address_types: tuple[str, ...]) -> exp.Expression:
    """SELECT delivery_id, person_id, address: each delivery's best identifier for its channel
    (the first usable type in `address_types`, the smallest value on ties)."""
    ranks = " ".join(f"WHEN {literal(kind).sql('duckdb')} THEN {rank}" for rank, kind in enumerate(address_types))
    kinds = ", ".join(literal(kind).sql("duckdb") for kind in address_types)
    query = parsed_sql(f"""
SELECT delivery_id, person_id, address FROM (
  SELECT d.delivery_id, d.person_id, i.id_value AS address, ROW_NUMBER() OVER (
    PARTITION BY d.delivery_id ORDER BY CASE i.id_type {ranks} END, i.id_value) AS best
  FROM wanted_deliveries AS d
  JOIN identities AS i ON i.person_id = d.person_id AND i.id_type IN ({kinds})
  WHERE {usable_address_sql()}
) AS ranked WHERE best = 1""")
    wanted = delivery_ids.subquery("d")
    return query.transform(lambda node: wanted.copy() if isinstance(node, exp.Table)
                           and node.name == "wanted_deliveries" else node, copy=False)
