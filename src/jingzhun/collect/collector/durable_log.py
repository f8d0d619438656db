"""The collector's durable log: fsync'd, append-only segment files in `log/`.

A request is acknowledged only once its line is on disk (`fsync`), so a `kill -9`
or a power cut after the `200` loses nothing. One fsync costs about a millisecond,
so concurrent requests share it (group commit): while one fsync runs, the next
requests queue up and are written and synced together.

Layout: `log/segment-00000001.log`, ... (one JSON line per request) and
`log/checkpoint.json`, the position (segment, byte offset) the loader has loaded
up to. Segments wholly before the checkpoint are deleted.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

SEGMENT_BYTES = 64 * 1024 * 1024
_PREFIX, _SUFFIX = "segment-", ".log"
CHECKPOINT = "checkpoint.json"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the log: segment number and byte offset inside it."""

    segment: int
    offset: int


def _fsync_dir(directory: Path) -> None:
    """Make a create/rename durable: POSIX wants the folder itself synced too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableLog:
    """Append-only, fsync'd segment files; one writer (the server), one reader (the loader).

    The reader (`writer=False`, in the loader process) may read every whole line in
    the files, even one whose fsync has not returned yet: such a line survives a
    `kill -9` (it is in the page cache), and if a power cut loses its request's
    acknowledgement, the client's retry is dropped by the messageId anti-join.
    """

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES, *, writer: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.writer = writer
        self._lock = threading.Lock()
        if writer:
            numbers = self.segment_numbers()
            self._open_segment(numbers[-1] if numbers else 1, repair=True)

    def path(self, segment: int) -> Path:
        return self.directory / f"{_PREFIX}{segment:08d}{_SUFFIX}"

    def segment_numbers(self) -> list[int]:
        """The segment files present, oldest first."""
        names = (p.name for p in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"))
        return sorted(int(n[len(_PREFIX):-len(_SUFFIX)]) for n in names)

    def _open_segment(self, segment: int, repair: bool = False) -> None:
        path = self.path(segment)
        if repair and path.exists():
            _cut_torn_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.fsync(self._fd)
        _fsync_dir(self.directory)
        self._segment = segment
        self._size = os.fstat(self._fd).st_size
        self._durable = Position(segment, self._size)

    @property
    def durable(self) -> Position:
        """The end of what may be loaded: fsync'd (writer) or whole on disk (reader)."""
        if not self.writer:
            numbers = self.segment_numbers() or [1]
            path = self.path(numbers[-1])
            return Position(numbers[-1], path.stat().st_size if path.exists() else 0)
        with self._lock:
            return self._durable

    def append(self, data: bytes) -> Position:
        """Write whole lines and fsync them; return the new durable end. Not thread-safe:
        only the group committer calls it, one call at a time."""
        if self._size and self._size + len(data) > self.segment_bytes:
            os.close(self._fd)
            self._open_segment(self._segment + 1)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._size += len(data)
        with self._lock:
            self._durable = Position(self._segment, self._size)
            return self._durable

    def close(self) -> None:
        if self.writer:
            os.close(self._fd)

    def read(self, start: Position, max_bytes: int) -> tuple[list[bytes], Position]:
        """Whole lines from `start` up to the durable end (at most ~max_bytes), and where they end."""
        chunk, _, end = self.read_chunk(start, max_bytes)
        return chunk.split(b"\n")[:-1], end

    def read_chunk(self, start: Position, max_bytes: int) -> tuple[bytes, Position, Position]:
        """Whole lines (each ending in a newline) from `start`, where they begin and where they end.

        They begin at `start` unless the segment is used up, then at the next one's start.
        """
        durable = self.durable
        position = start
        while position.segment < durable.segment and not self._has_bytes_after(position):
            position = Position(position.segment + 1, 0)
        end = durable.offset if position.segment == durable.segment else None
        path = self.path(position.segment)
        if not path.exists():
            return b"", position, position
        with path.open("rb") as handle:
            handle.seek(position.offset)
            limit = max_bytes if end is None else min(max_bytes, end - position.offset)
            chunk = handle.read(max(limit, 0))
        cut = chunk.rfind(b"\n") + 1
        return chunk[:cut], position, Position(position.segment, position.offset + cut)

    def backlog_bytes(self, position: Position) -> int:
        """How many bytes of log lie after `position` (what the loader has yet to load)."""
        sizes = {n: self.path(n).stat().st_size for n in self.segment_numbers() if n >= position.segment}
        return max(sum(sizes.values()) - (position.offset if position.segment in sizes else 0), 0)

    def _has_bytes_after(self, position: Position) -> bool:
        path = self.path(position.segment)
        return path.exists() and path.stat().st_size > position.offset

    def load_checkpoint(self) -> Position:
        """Where the loader stopped last time (the start of the log if never)."""
        path = self.directory / CHECKPOINT
        if not path.exists():
            numbers = self.segment_numbers()
            return Position(numbers[0] if numbers else 1, 0)
        saved = orjson.loads(path.read_bytes())
        return Position(int(saved["segment"]), int(saved["offset"]))

    def save_checkpoint(self, position: Position) -> None:
        """Atomically record the loader's position, then drop fully loaded segments."""
        write_durably(self.directory / CHECKPOINT,
                      orjson.dumps({"segment": position.segment, "offset": position.offset}))
        for number in self.segment_numbers():
            if number < position.segment:
                self.path(number).unlink(missing_ok=True)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably: write a temporary file, fsync,
    rename over, fsync the folder (a crash leaves the old or the new file, never half)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _cut_torn_tail(path: Path) -> None:
    """Drop a half-written last line (a crash mid-write): it was never acknowledged."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with path.open("r+b") as handle:
            handle.truncate(keep)
            os.fsync(handle.fileno())


class GroupCommitter:
    """Lets many concurrent requests share one write + fsync of the durable log."""

    def __init__(self, log: DurableLog) -> None:
        self.log = log
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, line: bytes) -> None:
        """Return once `line` is fsync'd (raises if the disk write failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        """Write everything queued in one go; requests arriving meanwhile form the next group."""
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.log.append, b"".join(line for line, _ in group))
            except OSError as failure:
                for _, future in group:
                    future.set_exception(failure)
                continue
            for _, future in group:
                if not future.done():
                    future.set_result(None)
