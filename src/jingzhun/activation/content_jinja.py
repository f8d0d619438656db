"""Templates compiled in Jinja2's sandbox, checked before anyone is rendered.

The environment is `ImmutableSandboxedEnvironment` with `StrictUndefined`: a template can
read the values it is given and call `link()`, nothing else — no attribute starting with
an underscore (the usual way out of a sandbox, `''.__class__.__mro__`), no method that
changes a list or dict, and a missing value is an error instead of an empty string.

Each text is checked once when compiled: its syntax, that every variable is one the
context provides, and that `person.x`, `product.x`, `coupon.x`, `store.x` (and the loop
variable over `products`) name real keys. So a typo fails at preview, for everyone, with
the template, the file line and the variable named; what only shows at render time (a
value missing for one person) fails the same way, naming the person too.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.environment import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from jingzhun.activation.channels import ELLIPSIS, ContentError
from jingzhun.activation.content_templates import MessageTemplate, source_map
from jingzhun.activation.coupons import money_text

PERSON_KEYS = frozenset({"id", "name", "surname", "greeting", "honorific", "gender", "member_level", "city",
                         "province", "favourite_category"})
PRODUCT_KEYS = frozenset({"id", "name", "price", "price_text", "category", "category_name", "reason", "url"})
COUPON_KEYS = frozenset({"code", "name", "discount", "min_spend", "valid_from", "valid_until", "expires_at",
                         "preview"})
STORE_KEYS = frozenset({"id", "name", "city"})
# Every name a template may use; a dict shape lists its keys, None is a plain value.
CONTEXT: dict[str, frozenset[str] | None] = {
    "person": PERSON_KEYS, "product": PRODUCT_KEYS, "products": None, "coupon": COUPON_KEYS,
    "store": STORE_KEYS, "brand": None, "site_url": None, "url": None, "link": None,
    "unsubscribe": None, "today": None, "channel": None, "language": None,
}
_SHAPED = {"person": PERSON_KEYS, "product": PRODUCT_KEYS, "coupon": COUPON_KEYS, "store": STORE_KEYS}


def shorten(text: object, width: int = 12) -> str:
    """At most `width` characters, the last one '…' when cut (Jinja filter `shorten`)."""
    value = str(text)
    return value if len(value) <= width else value[: max(width - 1, 0)] + ELLIPSIS


@lru_cache(maxsize=2)
def environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """The sandbox every template renders in (HTML texts autoescaped)."""
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html, trim_blocks=True,
                                       lstrip_blocks=True)
    env.filters["money"] = lambda value, currency="CNY": money_text(value, currency)
    env.filters["shorten"] = shorten
    return env


@dataclass(frozen=True)
class CompiledText:
    """One compiled text and where it came from."""

    key: tuple[str, ...]
    template: Template

    @property
    def part(self) -> str:
        return ".".join(self.key[3:]) if self.key[0] == "channels" else ".".join(self.key)


def compile_texts(template: MessageTemplate, channel: str, language: str) -> dict[str, CompiledText]:
    """Every text of one variant (and the landing link), parsed, checked and compiled."""
    compiled = {}
    texts = dict(template.texts(channel, language))
    for part, source in texts.items():
        key = ("channels", channel, language, *part.split("."))
        compiled[part] = _compile(template, key, source, html=part == "html")
    if template.link:
        compiled["link"] = _compile(template, ("link",), template.link, html=False)
    return compiled


def _compile(template: MessageTemplate, key: tuple[str, ...], source: str, html: bool) -> CompiledText:
    env = environment(html)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as broken:
        raise template_error(template, key, broken.lineno, None,
                             (f"语法错误：{broken.message}", f"syntax error: {broken.message}"),
                             ("检查 {{ }} 与 {% %} 是否成对、括号是否闭合", "check that {{ }} and {% %} pairs and brackets are closed")) from None
    check_names(template, key, tree)
    return CompiledText(key, env.from_string(tree))  # type: ignore[arg-type]


def check_names(template: MessageTemplate, key: tuple[str, ...], tree: nodes.Template) -> None:
    """Refuse unknown variables, unknown keys of known values and reaches into internals."""
    for name in sorted(meta.find_undeclared_variables(tree)):
        if name not in CONTEXT:
            raise _unknown(template, key, _line_of_name(tree, name), name, sorted(CONTEXT))
    loops = {loop.target.name: PRODUCT_KEYS for loop in tree.find_all(nodes.For)
             if isinstance(loop.target, nodes.Name) and _root_name(loop.iter) == "products"}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attr = _key_of(node)
        if attr is not None and attr.startswith("_") and not _reaches_inside(node.node):
            raise template_error(template, key, node.lineno, attr,
                                 (f"不允许访问内部属性 {attr!r}（沙箱禁止）。", f"access to internal attribute {attr!r} is not allowed (sandbox)."),
                                 ("模板只能使用提供的变量，见 docs/content.md", "templates may use only the variables provided; see docs/content.md"))
        shape = _shape_of(node.node, loops)
        if shape is not None and isinstance(attr, str) and attr not in shape:
            raise _unknown(template, key, node.lineno, f"{_root_name(node.node)}.{attr}", sorted(shape))


def _key_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return _const_key(node.arg) if isinstance(node, nodes.Getitem) else None


def _reaches_inside(node: nodes.Node) -> bool:
    """Whether an inner part of `x.a.b` already reaches for an underscore name (report that one)."""
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        key = _key_of(node)
        if key is not None and key.startswith("_"):
            return True
        node = node.node
    return False


def _shape_of(node: nodes.Node, loops: Mapping[str, frozenset[str]]) -> frozenset[str] | None:
    if isinstance(node, nodes.Name):
        return _SHAPED.get(node.name) or loops.get(node.name)
    if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name == "products" \
            and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, int):
        return PRODUCT_KEYS
    return None


def _root_name(node: nodes.Node) -> str | None:
    while isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Filter)):
        node = node.node  # type: ignore[assignment]
    return node.name if isinstance(node, nodes.Name) else None


def _const_key(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _line_of_name(tree: nodes.Template, name: str) -> int | None:
    return next((node.lineno for node in tree.find_all(nodes.Name) if node.name == name), None)


def _unknown(template: MessageTemplate, key: tuple[str, ...], line: int | None, name: str,
             known: list[str]) -> ContentError:
    return template_error(template, key, line, name, (f"未知变量 {name!r}。", f"unknown variable {name!r}."),
                          (f"可用：{'、'.join(known)}", f"use one of: {', '.join(known)}"))


def template_error(template: MessageTemplate, key: tuple[str, ...], inner_line: int | None, variable: str | None,
                   message: tuple[str, str], fix: tuple[str, str], person_id: str | None = None) -> ContentError:
    """A ContentError naming the template, its file line, the text and the variable."""
    sources = source_map(template)
    line = sources.line_of(key, inner_line)
    text = ".".join(key)
    at_en = f"line {line}, " if line else ""
    at_zh = f"第 {line} 行，" if line else ""
    who_en = f", person {person_id}" if person_id else ""
    who_zh = f"，客户 {person_id}" if person_id else ""
    return ContentError(
        f"template {template.id!r} ({at_en}{text}{who_en}): {message[1]}", fix=fix[1], field=variable or text,
        location=sources.path, message_zh=f"模板 {template.id!r}（{at_zh}{text}{who_zh}）：{message[0]}", fix_zh=fix[0])


_VARIABLE = re.compile(r"attribute '([^']+)'|'([^']+)' is undefined|no attribute '([^']+)'")


def render_text(template: MessageTemplate, text: CompiledText, context: Mapping[str, object], person_id: str) -> str:
    """Render one compiled text; a failure names the line, the variable and the person."""
    try:
        return text.template.render(context)
    except TemplateError as failed:
        line = _template_line(failed)
        found = _VARIABLE.search(str(failed))
        variable = next((group for group in found.groups() if group), None) if found else None
        if type(failed).__name__ == "SecurityError":
            message = (f"沙箱拒绝了 {variable!r} 的访问。", f"the sandbox refused access to {variable!r}.")
        else:
            message = (f"渲染失败：{failed}", f"cannot render: {failed}")
        raise template_error(template, text.key, line, variable, message,
                             ("为可能缺失的值加默认值，例如 {{ store.name if store else '' }}",
                              "give values that may be missing a default, e.g. {{ store.name if store else '' }}"),
                             person_id) from None


def _template_line(failed: BaseException) -> int | None:
    """The template line Jinja's rewritten traceback points at."""
    lines = [line for frame, line in traceback.walk_tb(failed.__traceback__)
             if frame.f_code.co_filename == "<template>"]
    return lines[-1] if lines else getattr(failed, "lineno", None)
