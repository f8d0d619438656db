"""The durable log: whole lines only, torn tails cut, checkpoints, group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jingzhun.collect.collector.durable_log import DurableLog, GroupCommitter, Position


def test_append_read_and_checkpoint(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.append(b"one\ntwo\n")
    lines, end = log.read(log.load_checkpoint(), 1 << 20)
    assert lines == [b"one", b"two"] and end == log.durable
    log.save_checkpoint(end)
    log.close()
    reopened = DurableLog(tmp_path)
    assert reopened.load_checkpoint() == end
    assert reopened.read(end, 1 << 20)[0] == []


def test_torn_tail_is_cut_on_open(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.append(b"whole\n")
    log.close()
    with log.path(1).open("ab") as handle:
        handle.write(b'{"half')  # a crash in the middle of a write: never acknowledged
    reopened = DurableLog(tmp_path)
    reopened.append(b"next\n")
    assert reopened.read(Position(1, 0), 1 << 20)[0] == [b"whole", b"next"]


def test_segments_roll_and_loaded_ones_are_deleted(tmp_path: Path) -> None:
    log = DurableLog(tmp_path, segment_bytes=10)
    for number in range(5):
        log.append(f"line-{number}\n".encode())
    assert len(log.segment_numbers()) == 5
    position, seen = log.load_checkpoint(), []
    while True:
        lines, position = log.read(position, 1 << 20)
        if not lines:
            break
        seen.extend(lines)
        log.save_checkpoint(position)
    assert seen == [f"line-{n}".encode() for n in range(5)]
    assert log.segment_numbers() == [5]


def test_partial_read_stops_at_a_line_boundary(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.append(b"aaaa\nbbbb\n")
    lines, end = log.read(Position(1, 0), 7)
    assert lines == [b"aaaa"] and end == Position(1, 5)


def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    calls = []
    original = log.append

    def counting(data: bytes) -> Position:
        calls.append(data.count(b"\n"))
        return original(data)

    log.append = counting  # type: ignore[method-assign]
    committer = GroupCommitter(log)

    async def burst() -> None:
        await asyncio.gather(*(committer.append(f"{n}\n".encode()) for n in range(200)))

    asyncio.run(burst())
    assert sum(calls) == 200
    assert len(calls) < 200  # grouped: fewer fsyncs than requests
    assert len(log.read(Position(1, 0), 1 << 20)[0]) == 200
