"""The decision API's copy store: what a text reads is found in its syntax tree, and a rendering
kept for one context is only ever reused for a context that renders the same."""

from __future__ import annotations

import random

import pytest

from jingzhun.activation.content_templates import (
    ChannelContent,
    MessageTemplate,
    ProductSource,
    Text,
    Variant,
)
from jingzhun.activation.decisions_copy import CopyRenderer, reads_of

TEXTS = {
    "plain": ("猜你喜欢", "Picked for you"),
    "fields": ("{{ person.greeting }}，{{ product.name }}{% if product.reason %}：{{ product.reason }}{% endif %}",
               "{{ product.name }}{% if product.reason %}: {{ product.reason }}{% endif %}"),
    "loop": ("{% for p in products %}{{ p.name }}{% if not loop.last %}、{% endif %}{% endfor %}",
             "{% for p in products %}{{ p.name }} {{ p.price_text }}{% endfor %}"),
    "whole": ("{{ products[1].name if products|length > 1 else '' }}{% set who = person %}{{ who.name }}",
              "{% if coupon %}{{ coupon.code }}{% endif %}{{ today }}"),
}


def template(texts: tuple[str, str]) -> MessageTemplate:
    zh, en = texts
    return MessageTemplate(id="copy_test", kind="custom", name=Text(zh="测试", en="test"),
                           products=ProductSource(source="none"), purpose="transactional",
                           channels={"app_push": ChannelContent(zh=Variant(title="标题", body=zh),
                                                                en=Variant(title="Title", body=en), truncate=True)})


def test_reads_are_found_in_the_syntax_tree() -> None:
    assert reads_of(TEXTS["fields"][0]) == {("person", "greeting"), ("product", "name"), ("product", "reason")}
    assert reads_of(TEXTS["loop"][1]) == {("products", "#"), ("products", "*", "name"), ("products", "*", "price_text")}
    # read in ways the paths cannot follow: the whole value
    assert reads_of(TEXTS["whole"][0]) == {("products",), ("person",)}
    assert reads_of(TEXTS["whole"][1]) == {("coupon",), ("coupon", "code"), ("today",)}
    assert reads_of("{% for p in products|sort(attribute='price') %}{{ p.name }}{% endfor %}") == {("products",)}
    assert reads_of(TEXTS["plain"][0]) == frozenset()


def test_a_text_reading_nothing_is_rendered_once() -> None:
    renderer = CopyRenderer.compile(template(TEXTS["plain"]), "app_push")
    assert set(renderer.constant) == {"zh", "en"}
    assert renderer.render("zh", {}, "p") == {"title": "标题", "body": "猜你喜欢"}


def context(rng: random.Random) -> dict:
    """A context whose values come from small pools, so contexts often share what a text reads."""
    pick = rng.choice
    products = [{"id": f"P{n}", "name": pick(["面霜", "精华", "口红"]), "price_text": pick(["¥49", "¥99"]),
                 "reason": pick(["", "热销"]), "url": "", "price": 1.0, "category": "c", "category_name": "c"}
                for n in range(rng.randint(1, 3))]
    return {"person": {"greeting": pick(["王女士", "亲爱的顾客"]), "name": pick(["王芳", "李雷"])},
            "products": products, "product": products[0], "today": pick(["11月2日", "11月3日"]),
            "coupon": pick([None, {"code": "JZ1"}, {"code": "JZ2"}]), "store": None, "brand": "", "site_url": "",
            "url": "", "link": str, "unsubscribe": "", "channel": "app_push", "language": "zh"}


@pytest.mark.parametrize("kind", ["fields", "loop", "whole"])
def test_a_kept_rendering_equals_rendering_again(kind: str) -> None:
    renderer = CopyRenderer.compile(template(TEXTS[kind]), "app_push")
    fresh = CopyRenderer.compile(template(TEXTS[kind]), "app_push")
    rng = random.Random(7)
    for _ in range(300):
        asked = context(rng)
        for language in ("zh", "en"):
            assert renderer.render(language, asked, "p") == fresh._render(language, dict(asked), "p")
    assert renderer.hits > 100 and renderer.misses > 2  # contexts were shared, and told apart
