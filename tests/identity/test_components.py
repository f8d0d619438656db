"""Connected components in SQL agree with a union-find, on both engines."""

from __future__ import annotations

import random

import pyarrow as pa

from jingzhun.identity.components import connected_components


def _union_find(edges: list[tuple[str, str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in parent}


def _components(engine, edges: list[tuple[str, str]]) -> tuple[dict[str, str], int]:
    engine.write_table("g", pa.table({"a": [e[0] for e in edges], "b": [e[1] for e in edges]}), mode="replace")
    rounds = connected_components(engine, "SELECT a, b FROM g", "g_cc")
    rows = engine.read_table("g_cc").to_pylist()
    return {row["node"]: row["label"] for row in rows}, rounds


def test_random_graph_matches_union_find(engine) -> None:
    rng = random.Random(7)
    nodes = [f"n{i:04d}" for i in range(400)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(300)]
    edges = [(a, b) for a, b in edges if a != b]
    labels, _ = _components(engine, edges)
    expected = _union_find(edges)
    assert labels == {node: expected[node] for node in labels}
    assert set(labels) == set(expected)


def test_long_chain_settles_in_few_rounds(engine) -> None:
    chain = [f"c{i:04d}" for i in range(256)]
    edges = list(zip(chain[1:], chain[:-1], strict=True))  # reversed so the minimum starts far away
    labels, rounds = _components(engine, edges)
    assert set(labels.values()) == {"c0000"}
    assert rounds <= 12  # pointer jumping: about log2(256) rounds, not 256


def test_no_edges_gives_no_rows(engine) -> None:
    engine.write_table("g", pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.string())}), mode="replace")
    connected_components(engine, "SELECT a, b FROM g", "g_cc")
    assert engine.row_count("g_cc") == 0
