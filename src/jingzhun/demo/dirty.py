"""How real exports mangle identifiers and text: phone formats, typos, broken rows.

Formats and corruptions are applied to whole Arrow columns at once: every format
is computed for all rows and one is picked per row, which is cheaper than
branching per row in Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jingzhun.demo.names import POOLS
from jingzhun.demo.vectors import concat, take, where

# Phone formats seen in Chinese POS/CRM exports, with their share.
PHONE_FORMATS = (
    ("plain", 0.45),  # 13812345678
    ("dashed", 0.15),  # 138-1234-5678
    ("intl_spaced", 0.10),  # +86 138 1234 5678
    ("cc_dash", 0.10),  # 86-13812345678
    ("spaced", 0.10),  # 138 1234 5678
    ("e164", 0.10),  # +8613812345678
)
MASKED_FORMAT = "masked"  # 138****5678: marketplaces and some POS receipts


def phone_formats(phone: pa.Array) -> dict[str, pa.Array]:
    """Every display format of 11-digit phones (nulls stay null)."""
    a = pc.utf8_slice_codeunits(phone, 0, 3)
    b = pc.utf8_slice_codeunits(phone, 3, 7)
    c = pc.utf8_slice_codeunits(phone, 7, 11)
    return {
        "plain": phone, "dashed": concat(a, "-", b, "-", c),
        "intl_spaced": concat("+86 ", a, " ", b, " ", c), "cc_dash": concat("86-", phone),
        "spaced": concat(a, " ", b, " ", c), "e164": concat("+86", phone),
        MASKED_FORMAT: concat(a, "****", c),
    }


def format_phones(rng: np.random.Generator, phone: pa.Array, masked_share: float = 0.0
                  ) -> pa.Array:
    """Format each phone in a randomly chosen style; masked_share of them masked."""
    forms = phone_formats(phone)
    names = [f for f, _ in PHONE_FORMATS] + [MASKED_FORMAT]
    p = np.array([w for _, w in PHONE_FORMATS]) * (1 - masked_share)
    pick = rng.choice(len(names), size=len(phone), p=np.append(p, masked_share))
    return pc.choose(pa.array(pick.astype(np.int8)), *[forms[k] for k in names])


def bad_phones(rng: np.random.Generator, phone: pa.Array) -> pa.Array:
    """Broken phones: 10 digits, 12 digits, or a letter typed for a digit (1 -> l, 0 -> O)."""
    n = len(phone)
    short = pc.utf8_slice_codeunits(phone, 0, 10)
    long_ = concat(phone, pa.array(rng.integers(0, 10, n).astype(str)))
    letter = pc.replace_substring(pc.replace_substring(phone, "1", "l", max_replacements=2),
                                  "0", "O", max_replacements=1)
    letter = concat(pc.utf8_slice_codeunits(phone, 0, 7), "x", pc.utf8_slice_codeunits(
        letter, 8, 11))
    pick = pa.array(rng.integers(0, 3, n).astype(np.int8))
    return pc.choose(pick, short, long_, letter)


def name_typos(rng: np.random.Generator, name: pa.Array) -> pa.Array:
    """同音字 substitution of the last character, or swapping the last two characters.

    Two thirds get a homophone (when the character has one in the pools), the rest a
    swap; either way the surname (first character) is kept.
    """
    n = len(name)
    length = pc.utf8_length(name)
    last = pc.utf8_slice_codeunits(name, -1, None)
    head = _slice_to(name, pc.subtract(length, 1))
    alt = _homophone(rng, last)
    homophone = concat(head, alt)
    swap = concat(_slice_to(name, pc.subtract(length, 2)),
                  last, pc.utf8_slice_codeunits(head, -1, None))
    can_swap = pc.greater_equal(length, 3).to_numpy(zero_copy_only=False)
    use_swap = can_swap & ((rng.random(n) < 1 / 3) | ~pc.is_valid(alt).to_numpy(
        zero_copy_only=False))
    return where(use_swap, swap, pc.coalesce(homophone, name))


def _slice_to(name: pa.Array, stop: pa.Array) -> pa.Array:
    """name[:stop] per row (stop is an int array); Arrow's slice takes one stop only."""
    stops = stop.to_numpy(zero_copy_only=False)
    out = pa.nulls(len(name), pa.string())
    for k in np.unique(stops):  # name lengths: 2-4 distinct values
        sel = pa.array(stops == k)
        out = pc.if_else(sel, pc.utf8_slice_codeunits(name, 0, int(k)), out)
    return out


def _homophone(rng: np.random.Generator, chars: pa.Array) -> pa.Array:
    """A random same-pinyin character for each char, null where there is none."""
    keys = list(POOLS.homophone)
    width = max(len(v) for v in POOLS.homophone.values())
    table = np.full((len(keys), max(width, 1)), None, dtype=object)
    counts = np.zeros(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):  # ~150 pool characters
        alts = POOLS.homophone[k]
        table[i, : len(alts)] = alts
        counts[i] = len(alts)
    idx = pc.index_in(chars, value_set=pa.array(keys)).to_numpy(zero_copy_only=False)
    found = ~np.isnan(idx.astype(float))
    row = np.where(found, np.nan_to_num(idx.astype(float)), 0).astype(np.int64)
    k = (rng.random(len(chars)) * np.maximum(counts[row], 1)).astype(np.int64)
    pick = table[row, np.minimum(k, table.shape[1] - 1)]
    return pa.array(np.where(found & (counts[row] > 0), pick, None), type=pa.string())


def mojibake(values: pa.Array, codec: str = "gbk") -> pa.Array:
    """UTF-8 bytes wrongly decoded with another codec (乱码), e.g. 王芳 -> 鐜嬭姵.

    Only applied to the few rows chosen as malformed, so a per-value Python
    decode is fine here (it is a sample, not the data).
    """
    out = [None if v is None else v.encode("utf-8").decode(codec, errors="ignore")
           for v in values.to_pylist()]
    return pa.array(out, type=pa.string())


def bad_dates(rng: np.random.Generator, n: int) -> pa.Array:
    """Unparseable date texts as clerks and broken exports leave them."""
    options = np.array(["2025-02-30", "2025/13/08", "00-00-0000", "不详", "#VALUE!",
                        "2025年13月5日", "31/31/2025", "9999-99-99 99:99:99"], dtype=object)
    return take(options, rng.integers(0, len(options), n))
