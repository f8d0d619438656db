"""Sources and their write keys, stored hashed.

A write key is a bearer secret baked into web pages and apps, so only its SHA-256
is stored (a leaked database does not leak keys) and the key is shown once, when
the source is created. Keys are long random tokens, so an unsalted fast hash is
enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine

SOURCES = "sources"
KINDS = ("web", "app", "miniprogram", "server")


class CollectorError(JingzhunError):
    """Root of the collector's errors (bad source, bad tracking plan)."""


@dataclass(frozen=True)
class Source:
    """What a write key resolves to; `kind` doubles as the events' `channel`."""

    source_id: str
    name: str
    kind: str


def hash_key(write_key: str) -> str:
    """The stored form of a write key.

    Example:
        >>> hash_key("abc")[:12]
        'ba7816bf8f01'
    """
    return hashlib.sha256(write_key.encode()).hexdigest()


def add_source(engine: Engine, name: str, kind: str) -> tuple[Source, str]:
    """Create a source and return it with its write key (shown once, never stored)."""
    if kind not in KINDS:
        raise CollectorError(
            f"unknown source kind {kind!r}.", field="kind", fix=f"use one of {', '.join(KINDS)}",
            message_zh=f"未知的数据源类型 {kind!r}。", fix_zh=f"请使用 {'、'.join(KINDS)} 之一",
        )
    if not name.strip():
        raise CollectorError("the source name is empty.", field="name", fix="give the source a name",
                             message_zh="数据源名称为空。", fix_zh="请为数据源命名")
    if name in list_sources(engine).column("name").to_pylist():
        raise CollectorError(
            f"a source named {name!r} already exists.", field="name", fix="choose another name",
            message_zh=f"已存在名为 {name!r} 的数据源。", fix_zh="请换一个名称",
        )
    source = Source(source_id=f"src_{uuid.uuid4().hex[:16]}", name=name, kind=kind)
    write_key = f"jz_{secrets.token_urlsafe(24)}"
    row = {"source_id": [source.source_id], "name": [name], "kind": [kind],
           "write_key_hash": [hash_key(write_key)],
           "created_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC"))}
    engine.write_table(SOURCES, pa.table(row), mode="append")
    return source, write_key


def list_sources(engine: Engine) -> pa.Table:
    """All sources (without key hashes), oldest first."""
    query = (exp.select("source_id", "name", "kind", "created_at", "disabled_at")
             .from_(SOURCES).order_by("created_at"))
    return engine.query(query)


def load_write_keys(engine: Engine) -> dict[str, Source]:
    """Key hash → source, for enabled collector sources (files have no write key)."""
    query = (exp.select("source_id", "name", "kind", "write_key_hash").from_(SOURCES)
             .where(exp.column("write_key_hash").is_(exp.null()).not_())
             .where(exp.column("disabled_at").is_(exp.null())))
    rows = engine.query(query).to_pylist()
    return {row["write_key_hash"]: Source(row["source_id"], row["name"], row["kind"])
            for row in rows if row["kind"] in KINDS}
