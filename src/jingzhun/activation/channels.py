"""Channel rules: what an SMS, a WeChat template message, an app push and an e-mail may hold.

Each rule is the one the channel's operators enforce, so a message that passes here is
not refused (or silently cut) at the gateway:

* **SMS** (中国大陆运营商): the signature 【签名】 plus the text, every character — Chinese,
  letter, digit, punctuation, space — counting 1 (a character outside the BMP, such as
  most emoji, counts 2: UCS-2 sends it as two code units). Up to 70 characters is one
  message; longer is split into parts of 67 (the other 3 carry the concatenation header)
  and billed per part; 500 is the most a gateway accepts. `【】` are reserved for the
  signature (gateways refuse them in the text) and marketing SMS must say how to opt out
  (工信部《通信短信息服务管理规定》), so "回T退订" is added when the text has no opt-out.
* **WeChat template messages** (公众号模板消息): the data keys carry their type in their
  name (`thing1`, `time2`, `amount3`, …) and each type has a length and character rule;
  a value that breaks it is refused by WeChat (errcode 47003). Classic templates use
  `first`, `keyword1…n` and `remark`; since May 2023 WeChat no longer shows `first` and
  `remark`, which is said in the notes.
* **App push**: vivo, the strictest of the large Android vendors, takes a title of at
  most 20 Chinese characters (40 half-width) and a body of 50 (100 half-width); longer
  pushes are refused, so these are the limits. A body may be shortened with "…" only
  when the template allows it (`truncate: true`), and the message notes it.
* **E-mail**: a subject of at most 78 characters (RFC 5322's line length; inboxes show
  fewer), HTML of at most 102 KB (Gmail clips larger messages behind "View entire
  message"), always a plain-text part, and for marketing an unsubscribe line.

Over-limit content raises `ChannelLimitError` naming the template, channel, language,
person, field, the count and the limit, in Chinese and English.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from jingzhun.core.errors import JingzhunError

Channel = Literal["sms", "wechat", "app_push", "email"]
CHANNELS: tuple[str, ...] = ("sms", "wechat", "app_push", "email")
CHANNEL_NAMES = {"sms": ("短信", "SMS"), "wechat": ("微信模板消息", "WeChat template message"),
                 "app_push": ("App 推送", "app push"), "email": ("邮件", "e-mail")}

SMS_SINGLE = 70
SMS_PART = 67
SMS_MAX_CHARS = 500
SMS_OPT_OUT = {"zh": "回T退订", "en": "Reply T to opt out"}
_OPT_OUT = re.compile(r"退订|拒收|回\s*T|reply\s+t\b|opt[- ]?out|unsubscribe|\bSTOP\b", re.IGNORECASE)

PUSH_TITLE_WIDTH = 40
PUSH_BODY_WIDTH = 100
EMAIL_SUBJECT_CHARS = 78
EMAIL_HTML_BYTES = 102 * 1024
ELLIPSIS = "…"


class ContentError(JingzhunError):
    """A message template or its rendering is invalid (names the template, line and variable)."""


class ChannelLimitError(ContentError):
    """Rendered content breaks a channel's rule (length, characters, required parts)."""


@dataclass(frozen=True)
class Where:
    """Which message a rule is checking, for error messages."""

    template_id: str
    channel: str
    language: str
    person_id: str | None = None
    location: str | None = None

    def en(self) -> str:
        person = f", person {self.person_id}" if self.person_id else ""
        return f"template {self.template_id!r} ({self.channel}/{self.language}{person})"

    def zh(self) -> str:
        person = f"，客户 {self.person_id}" if self.person_id else ""
        return f"模板 {self.template_id!r}（{self.channel}/{self.language}{person}）"

    def say(self, zh: str, en: str) -> str:
        """A note in the message's own language."""
        return zh if self.language == "zh" else en


@dataclass(frozen=True)
class ChannelOutput:
    """A message as the channel will carry it, and what the rules changed or observed."""

    title: str | None
    body: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    parts: int = 1
    notes: tuple[str, ...] = ()


def _limit(where: Where, part: str, message: tuple[str, str], fix: tuple[str, str]) -> ChannelLimitError:
    return ChannelLimitError(f"{where.en()}: {message[1]}", fix=fix[1], field=part, location=where.location,
                             message_zh=f"{where.zh()}：{message[0]}", fix_zh=fix[0])


# ---- SMS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsCount:
    """How carriers count an SMS: characters (UCS-2 code units) and billed parts."""

    chars: int
    parts: int


def count_sms(text: str) -> SmsCount:
    """Characters and parts of an SMS as Chinese carriers count them (signature included).

    Example:
        >>> count_sms("【精准】" + "好" * 66)
        SmsCount(chars=70, parts=1)
        >>> count_sms("【精准】" + "好" * 67)
        SmsCount(chars=71, parts=2)
    """
    chars = len(text.encode("utf-16-le")) // 2
    parts = 1 if chars <= SMS_SINGLE else -(-chars // SMS_PART)
    return SmsCount(chars, parts)


def compose_sms(text: str, *, signature: str | None, marketing: bool, language: str, where: Where) -> str:
    """The SMS as sent: 【signature】 + text (+ the opt-out for marketing when missing)."""
    if not signature:
        raise _limit(where, "sms_signature",
                     ("短信必须带签名，但 definitions/templates/_settings.yaml 未设置 sms_signature。",
                      "an SMS must carry the brand's signature, and definitions/templates/_settings.yaml "
                      "sets no sms_signature."),
                     ("设置 sms_signature: {zh: 品牌名, en: Brand}（须与短信服务商处报备的签名一致）",
                      "set sms_signature: {zh: 品牌名, en: Brand} (the signature registered with your SMS provider)"))
    body = " ".join(text.split())
    if "【" in body or "】" in body:
        raise _limit(where, "body", ("正文含有【】，短信中【】只用于签名，网关会拒发。",
                                     "the text contains 【】, which SMS gateways reserve for the signature."),
                     ("改用「」或 [] 标注，例如「个性推荐」", "use 「」 or [] instead, e.g. 「个性推荐」"))
    if marketing and not _OPT_OUT.search(body):
        # A space after Latin text, so a phone's link detection does not swallow the opt-out.
        joiner = " " if language != "zh" or (body and body[-1].isascii() and body[-1] not in ".,!?;:") else ""
        body = f"{body}{joiner}{SMS_OPT_OUT[language]}"
    return f"【{signature}】{body}"


def check_sms(sms: str, *, max_parts: int, where: Where) -> ChannelOutput:
    """Refuse an SMS over `max_parts` parts or the gateways' 500 characters."""
    count = count_sms(sms)
    allowed = min(SMS_MAX_CHARS, SMS_SINGLE if max_parts == 1 else max_parts * SMS_PART)
    if count.chars > allowed:
        raise _limit(where, "body",
                     (f"短信共 {count.chars} 字（含签名），超过 {allowed} 字（最多 {max_parts} 条："
                      f"单条 70 字，长短信每条 67 字）。",
                      f"the SMS has {count.chars} characters with its signature, over {allowed} "
                      f"({max_parts} part(s) at most: 70 for one, 67 per part when concatenated)."),
                     ("缩短文案（商品名可用 shorten 过滤器截短），或提高模板的 max_parts",
                      "shorten the text (cut product names with the shorten filter) or raise the template's max_parts"))
    return ChannelOutput(title=None, body=sms, parts=count.parts)


# ---- WeChat template messages -------------------------------------------------------------------

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SYMBOLS = r"""!-/:-@\[-`{-~，。、；：？！“”‘’（）《》【】…—·￥¥％"""
# Type prefix -> (max characters, allowed-characters pattern or None, zh/en description).
WECHAT_TYPES: dict[str, tuple[int, str | None, str, str]] = {
    "thing": (20, None, "20 个以内字符", "at most 20 characters"),
    "number": (32, r"[0-9.]+", "32 位以内数字，可带小数", "at most 32 digits, decimals allowed"),
    "letter": (32, r"[A-Za-z]+", "32 位以内字母", "at most 32 letters"),
    "symbol": (5, f"[{_SYMBOLS}]+", "5 位以内符号", "at most 5 symbols"),
    "character_string": (32, f"[0-9A-Za-z{_SYMBOLS}]+", "32 位以内数字、字母或符号",
                         "at most 32 digits, letters or symbols"),
    "time": (64, r"[0-9年月日:：/\-. ~]+", "24 小时制时间，可带年月日", "a 24-hour time, optionally with a date"),
    "date": (64, r"[0-9年月日:：/\-. ~]+", "年月日格式日期", "a date such as 2026年10月1日"),
    "amount": (16, r"[¥￥$€£]?[0-9]{1,10}(\.[0-9]{1,2})?元?", "1 个币种符号 + 10 位以内数字，可带小数、结尾可带“元”",
               "a currency sign and up to 10 digits, decimals allowed, may end in 元"),
    "phone_number": (17, r"[0-9+\-() ]+", "17 位以内数字、符号", "at most 17 digits and symbols"),
    "car_number": (8, None, "8 位以内车牌", "a plate of at most 8 characters"),
    "name": (10, None, "10 个以内汉字或 20 个以内字母", "at most 10 Chinese characters or 20 letters"),
    "phrase": (5, f"[{_CJK}]+", "5 个以内纯汉字", "at most 5 Chinese characters only"),
}
CLASSIC_KEYWORD_CHARS = 20
CLASSIC_EXTRA_CHARS = 100  # first / remark: no longer shown; kept short so old templates stay sane
_KEY = re.compile(r"^(?:first|remark|keyword[1-9][0-9]?|(?P<type>[a-z_]+?)[0-9]{1,2})$")


def wechat_key_type(key: str) -> str | None:
    """The WeChat data type a field key declares: `thing3` -> thing, `keyword2` -> classic.

    Returns None for a key WeChat cannot have.
    """
    matched = _KEY.match(key)
    if matched is None:
        return None
    kind = matched.group("type")
    if kind is None:
        return "classic"
    return kind if kind in WECHAT_TYPES else None


def check_wechat(title: str | None, fields: dict[str, str], *, truncate: bool, where: Where) -> ChannelOutput:
    """Validate each template-message field against its type's rule (truncating `thing` if allowed)."""
    if not any(key not in ("first", "remark") for key in fields):
        raise _limit(where, "fields", ("微信模板消息至少需要一个关键词字段。", "a WeChat template message needs at least one keyword field."),
                     ("在 fields 中加入 keyword1 或 thing1 等字段", "add a field such as keyword1 or thing1 under fields"))
    checked: dict[str, str] = {}
    notes: list[str] = []
    for key, raw in [*([("first", title)] if title else []), *fields.items()]:
        checked[key], note = _wechat_value(key, raw, truncate, where)
        notes += [note] if note else []
    if "first" in checked or "remark" in checked:
        notes.append(where.say("微信自 2023 年 5 月起不再显示 first/remark，重要内容请放在关键词字段",
                               "WeChat has not shown first/remark since 2023-05; put what matters in keyword fields"))
    title_out = checked.pop("first", None)
    return ChannelOutput(title=title_out, body="\n".join(f"{k}: {v}" for k, v in checked.items()),
                         fields=checked, notes=tuple(notes))


def _wechat_value(key: str, raw: str, truncate: bool, where: Where) -> tuple[str, str | None]:
    value = " ".join(raw.split())
    kind = wechat_key_type(key)
    if kind is None:
        raise _limit(where, f"fields.{key}", (f"微信模板字段名 {key!r} 无效。", f"{key!r} is not a WeChat template field key."),
                     ("使用 first、keyword1…、remark，或类型名加序号如 thing1、time2、amount3",
                      "use first, keyword1…, remark, or a type and a number such as thing1, time2, amount3"))
    if not value:
        raise _limit(where, f"fields.{key}", (f"字段 {key} 渲染后为空，微信会拒发。", f"field {key} is empty; WeChat refuses empty values."),
                     ("为该字段提供默认值，例如 {{ x or '—' }}", "give the field a default, e.g. {{ x or '—' }}"))
    limit, pattern, rule_zh, rule_en = _wechat_rule(key, kind)
    note = None
    if len(value) > limit and truncate and kind in ("thing", "classic"):
        value, note = value[: limit - 1] + ELLIPSIS, where.say(f"{key} 已截短为 {limit} 字", f"{key} shortened to {limit} characters")
    if len(value) > limit or (pattern and not re.fullmatch(pattern, value)):
        raise _limit(where, f"fields.{key}",
                     (f"字段 {key}（{kind}）的值 {value!r} 不符合微信规则：{rule_zh}。",
                      f"field {key} ({kind}) value {value!r} breaks WeChat's rule: {rule_en}."),
                     ("缩短或改写该字段；thing 类字段可设 truncate: true 自动截断",
                      "shorten or reword the field; thing fields may set truncate: true"))
    return value, note


def _wechat_rule(key: str, kind: str) -> tuple[int, str | None, str, str]:
    if kind != "classic":
        return WECHAT_TYPES[kind]
    if key.startswith("keyword"):
        return CLASSIC_KEYWORD_CHARS, None, "20 个以内字符", "at most 20 characters"
    return CLASSIC_EXTRA_CHARS, None, "100 个以内字符", "at most 100 characters"


# ---- app push ------------------------------------------------------------------------------------


def display_width(text: str) -> int:
    """Half-width units: a Chinese (wide) character counts 2, others 1, as vivo counts.

    Example:
        >>> display_width("新品上市 New")
        12
    """
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _cut_to_width(text: str, width: int) -> str:
    kept, used = [], display_width(ELLIPSIS)
    for char in text:
        used += display_width(char)
        if used > width:
            break
        kept.append(char)
    return "".join(kept).rstrip() + ELLIPSIS


def check_push(title: str, body: str, *, truncate: bool, where: Where) -> ChannelOutput:
    """Title within 40 half-width units, body within 100 (shortened only if allowed)."""
    title, body = " ".join(title.split()), " ".join(body.split())
    if not title or not body:
        raise _limit(where, "title" if not title else "body", ("推送的标题和正文都不能为空。", "a push needs a title and a body."),
                     ("为模板的 title 和 body 都写上内容", "write both title and body in the template"))
    if display_width(title) > PUSH_TITLE_WIDTH:
        raise _limit(where, "title", (f"推送标题 {title!r} 宽 {display_width(title)}，超过 40（20 个汉字）。",
                                      f"push title {title!r} is {display_width(title)} half-width units wide, over 40 (20 Chinese characters)."),
                     ("缩短标题", "shorten the title"))
    notes: tuple[str, ...] = ()
    if display_width(body) > PUSH_BODY_WIDTH:
        if not truncate:
            raise _limit(where, "body", (f"推送正文宽 {display_width(body)}，超过 100（50 个汉字），厂商通道会拒发。",
                                         f"push body is {display_width(body)} half-width units wide, over 100 (50 Chinese "
                                         f"characters); vendor channels refuse it."),
                         ("缩短正文，或在模板中设 truncate: true 允许以“…”截断",
                          "shorten the body, or set truncate: true to allow cutting it with '…'"))
        body = _cut_to_width(body, PUSH_BODY_WIDTH)
        notes = (where.say("正文已截短为 100 个半角宽度（50 个汉字）", "body shortened to 100 half-width units"),)
    return ChannelOutput(title=title, body=body, notes=notes)


# ---- e-mail ---------------------------------------------------------------------------------------


def text_to_html(text: str) -> str:
    """A minimal HTML body for an e-mail written as plain text (escaped, one <p> per paragraph)."""
    paragraphs = [html.escape(part).replace("\n", "<br>") for part in re.split(r"\n\s*\n", text.strip())]
    inner = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs if paragraph)
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{inner}</body></html>'


def check_email(subject: str, text: str, html_body: str | None, *, marketing: bool, unsubscribe: str,
                where: Where) -> ChannelOutput:
    """Subject ≤ 78 characters, HTML ≤ 102 KB, a text part always, an unsubscribe line for marketing."""
    subject = " ".join(subject.split())
    if not subject or len(subject) > EMAIL_SUBJECT_CHARS:
        raise _limit(where, "title", (f"邮件主题长 {len(subject)} 字，应为 1–{EMAIL_SUBJECT_CHARS} 字。",
                                      f"the subject has {len(subject)} characters; it must have 1-{EMAIL_SUBJECT_CHARS}."),
                     ("改写主题", "rewrite the subject"))
    text = text.strip()
    if marketing and not _OPT_OUT.search(text):
        text = f"{text}\n\n{unsubscribe}"
    body = html_body if html_body is not None else text_to_html(text)
    if marketing and not _OPT_OUT.search(body):
        body = body.replace("</body>", f"<p>{html.escape(unsubscribe)}</p></body>") if "</body>" in body \
            else f"{body}<p>{html.escape(unsubscribe)}</p>"
    size = len(body.encode("utf-8"))
    if size > EMAIL_HTML_BYTES:
        raise _limit(where, "html", (f"邮件 HTML 为 {size:,} 字节，超过 102 KB，Gmail 会折叠其余内容。",
                                     f"the HTML is {size:,} bytes, over 102 KB; Gmail clips the rest."),
                     ("精简 HTML（图片用链接，不要内嵌）", "slim the HTML (link images instead of embedding them)"))
    return ChannelOutput(title=subject, body=body, text=text)
