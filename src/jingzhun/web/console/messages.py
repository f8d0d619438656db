"""The console's message catalogue (messages.yaml): every page's words in Chinese and English.

The shell page embeds the catalogue once (`<script type="application/json" id="i18n">`) and the
pages look words up in the browser, so switching language redraws a page without a request for
text. The log-in page's and the frame's own words stay in `console/__init__.py` (`TEXT`) and are
merged in here, so the browser has one catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import yaml

CATALOGUE = Path(__file__).with_name("messages.yaml")
LANGUAGES = ("zh", "en")


@cache
def page_messages() -> dict[str, dict[str, str]]:
    """language → key → text, from messages.yaml (each entry has both languages)."""
    entries = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return {lang: {key: texts[lang] for key, texts in entries.items()} for lang in LANGUAGES}


def console_messages(frame_text: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """The frame's words and the pages' words, per language (the pages' win on a clash)."""
    pages = page_messages()
    return {lang: {**frame_text.get(lang, {}), **pages[lang]} for lang in LANGUAGES}
