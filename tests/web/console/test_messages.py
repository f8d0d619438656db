"""The console's one message catalogue: every word a page looks up exists in Chinese and English."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from jingzhun.web.console import TEXT
from jingzhun.web.console.messages import CATALOGUE, console_messages

STATIC = Path(CATALOGUE).parent / "static" / "console"
# t("key") — a literal key; t(`prefix.${…}`) — a key built from a value the page lists itself.
LITERAL = re.compile(r'\bt\("([^"]+)"')
BUILT = re.compile(r"\bt\(`([a-z_.\-]+)\$\{")


def scripts() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(STATIC.rglob("*.js")))


def test_every_entry_has_both_languages_and_the_same_placeholders() -> None:
    entries = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    assert len(entries) > 300
    for key, texts in entries.items():
        assert set(texts) == {"zh", "en"} and all(texts.values()), key
        assert set(re.findall(r"\{(\w+)\}", texts["zh"])) == set(re.findall(r"\{(\w+)\}", texts["en"])), key


def test_every_key_a_page_uses_is_in_the_catalogue() -> None:
    merged = console_messages(TEXT)
    source = scripts()
    used = set(LITERAL.findall(source))
    assert len(used) > 200
    missing = {lang: sorted(used - set(merged[lang])) for lang in ("zh", "en")}
    assert missing == {"zh": [], "en": []}
    for prefix in set(BUILT.findall(source)):  # each family of built keys has entries
        assert any(key.startswith(prefix) for key in merged["en"]), prefix


def test_the_frame_words_join_the_pages_words() -> None:
    merged = console_messages(TEXT)
    assert merged["zh"]["nav.persons"] == "客户 360" and merged["en"]["builder.live_size"] == "Persons matching now"
