"""`jingzhun source add|list` as a user runs them."""

from __future__ import annotations

import os
import subprocess

from jingzhun.collect.collector import hash_key
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from tests.collect.collector.conftest import JINGZHUN


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([JINGZHUN, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JINGZHUN_LANG": "en", "COLUMNS": "200"})


def test_source_add_prints_the_key_once_and_stores_its_hash(workspace: Workspace) -> None:
    added = run("source", "add", "mini-shop", "--kind", "miniprogram", "-w", str(workspace.root))
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("jz_") and "shown only once" in added.stdout
    listed = run("source", "list", "-w", str(workspace.root))
    assert "mini-shop" in listed.stdout and "miniprogram" in listed.stdout and key not in listed.stdout
    with open_engine(workspace) as engine:
        stored = engine.query("SELECT write_key_hash FROM sources").column("write_key_hash").to_pylist()
    assert stored == [hash_key(key)]


def test_bad_kind_names_the_field_and_the_fix(workspace: Workspace) -> None:
    failed = run("source", "add", "x", "--kind", "tv", "-w", str(workspace.root))
    assert failed.returncode == 2
    assert "unknown source kind 'tv'" in failed.stderr and "web, app, miniprogram, server" in failed.stderr
