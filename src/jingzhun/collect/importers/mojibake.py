"""Mojibake (乱码): UTF-8 text that some tool decoded with the wrong codec.

A POS that reads a UTF-8 product list as GBK prints 玉肌… as 鐜夎倢…; a CRM that
reads UTF-8 names as Windows-1252 shows 王芳 as `çŽ‹èŠ³`. Such values would load
as valid text and poison names and products for good, so a field with
`check_mojibake: true` sets them aside with the likely original text.

The test: encode the text back with the suspected codec and read the bytes as
UTF-8. Mojibake gives back the structure of UTF-8 — lead bytes followed by
continuation bytes — and CJK characters; real text in that codec almost never
does. The wrong decode often dropped a few bytes (undefined in the codec), so
sequences cut short are tolerated, more so for Windows-1252 (which cannot hold
Chinese, so real Chinese text never gets this far) than for GBK (which can).

Only distinct non-ASCII values reach Python, so the cost per batch is bounded by
the number of distinct texts, not rows (product names repeat on every receipt).
ftfy was considered: it fixes single-byte codecs only (not GBK), and cannot
repair the lossy cases above, which are the common ones in practice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

CODECS = ("gbk", "cp1252")
CODEC_NAMES = {"gbk": "GBK", "cp1252": "Windows-1252"}
_TOKEN = re.compile(rb"[\x00-\x7f]+|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{1,2}|[\xf0-\xf4][\x80-\xbf]{1,3}|.",
                    re.DOTALL)
_FULL = {0xC: 2, 0xD: 2, 0xE: 3, 0xF: 4}  # group length by the lead byte's high nibble


@dataclass(frozen=True)
class Garbled:
    """A value judged to be mojibake: the codec it was wrongly read with, and the likely original."""

    codec: str
    repaired: str


def _counts(data: bytes) -> tuple[int, int, int, int]:
    """(complete CJK sequences, other complete sequences, cut-short sequences, stray bytes)."""
    cjk = other = short = stray = 0
    for token in _TOKEN.findall(data):
        lead = token[0]
        if lead < 0x80:
            continue
        if len(token) == 1:  # a continuation byte out of place, or a lead byte with none
            stray += 1
        elif len(token) < _FULL[lead >> 4]:
            short += 1
        elif 0xE3 <= lead <= 0xE9:
            cjk += 1
        else:
            other += 1
    return cjk, other, short, stray


def _judge(text: str, codec: str) -> Garbled | None:
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        return None
    if data.isascii():
        return None
    cjk, other, short, stray = _counts(data)
    if codec == "gbk":  # GBK also encodes real Chinese: ask for clear evidence
        garbled = cjk >= 2 and cjk >= short + 2 * stray
    else:
        clean = short == 0 and stray == 0 and cjk + other >= 1
        garbled = clean or (cjk + short >= 2 and stray <= cjk + short)
    return Garbled(codec, data.decode("utf-8", "replace")) if garbled else None


def judge(text: str) -> Garbled | None:
    """Whether `text` is mojibake, and if so what it probably said."""
    for codec in CODECS:
        found = _judge(text, codec)
        if found is not None:
            return found
    return None


def find_garbled(values: pa.Array) -> tuple[pa.Array | None, dict[str, Garbled]]:
    """Per row whether the text is mojibake (None: no row is), and the verdict per garbled value."""
    distinct = pc.unique(values).drop_null()
    candidates = pc.filter(distinct, pc.invert(pc.string_is_ascii(distinct))).to_pylist()
    verdicts = {text: found for text in candidates if (found := judge(text)) is not None}
    if not verdicts:
        return None, {}
    flagged = pc.is_in(values, value_set=pa.array(list(verdicts), pa.string()))
    return pc.fill_null(flagged, False), verdicts
