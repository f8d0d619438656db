"""Which text encoding a CSV export is in.

Chinese exports come as UTF-8, UTF-8 with a BOM (Excel's "CSV UTF-8"), GBK (most
POS and older Windows tools) or GB18030 (问卷星, newer Windows tools). GBK is a
subset of GB18030, so a file that decodes as GBK is reported as GBK and read with
the GB18030 codec, which decodes every GBK file identically and also the rare
characters GBK lacks. The sample is the first megabyte; a user override wins.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from jingzhun.core.errors import JingzhunError

SAMPLE_BYTES = 1 << 20
ALIASES = {"utf8": "utf-8", "utf-8-sig": "utf-8-sig", "utf8-bom": "utf-8-sig", "utf-8-bom": "utf-8-sig",
           "gb2312": "gbk", "cp936": "gbk"}


class EncodingError(JingzhunError):
    """The file's encoding is unknown or the user named one Python does not know."""


def normalize_encoding(name: str) -> str:
    """A canonical codec name for a user's spelling (`UTF8`, `gb2312`, `utf-8-bom`)."""
    lowered = name.strip().lower().replace("_", "-")
    chosen = ALIASES.get(lowered, lowered)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise EncodingError(
            f"unknown encoding {name!r}.", field="encoding",
            fix="use utf-8, utf-8-sig, gbk or gb18030", message_zh=f"未知的编码 {name!r}。",
            fix_zh="请使用 utf-8、utf-8-sig、gbk 或 gb18030",
        ) from None
    return chosen


def _decodes(sample: bytes, encoding: str) -> bool:
    """Whether the sample decodes, allowing a multi-byte character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path: str | Path, override: str | None = None) -> str:
    """The encoding to read `path` with: the override, else detected from a sample."""
    if override:
        return normalize_encoding(override)
    with open(path, "rb") as source:
        sample = source.read(SAMPLE_BYTES)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for candidate in ("utf-8", "gbk", "gb18030"):
        if _decodes(sample, candidate):
            return candidate
    raise EncodingError(
        "cannot tell the file's encoding (not UTF-8, GBK or GB18030).", location=str(path),
        fix="pass --encoding with the encoding the exporting system uses",
        message_zh="无法识别文件编码（不是 UTF-8、GBK 或 GB18030）。",
        fix_zh="用 --encoding 指定导出系统使用的编码",
    )


def codec_for(encoding: str) -> str:
    """The codec that reads `encoding`: GB18030 for GBK (a strict superset)."""
    return "gb18030" if encoding == "gbk" else encoding
