"""The link map: what resolves the code of a short tracked link (`/s/{code}`) to its target.

A tracked link carries its target in a signed token (`/t/c/{token}`, tracking.py): no
database needed, but 100–120 characters, which costs an SMS a billed part. A short link
is `{base}/s/{code}` with a 10-character base62 code (59 bits) that activation derives
from the delivery id and the target with an HMAC under the workspace's tracking secret:
it cannot be computed without the secret, and 10 million live links leave a guess a
1-in-80-billion chance.

The code carries nothing, so the collector looks it up in the **link map**: one
append-only file per campaign under `.jingzhun/short_links/`, a line per link
(`code TAB delivery_id TAB campaign_id TAB url`). The sender appends a batch's links and
fsyncs them (under an exclusive `flock`, which also keeps codes unique) *before* the
batch is handed to a gateway, so every link that was ever sent is on disk; a crash
mid-append leaves a partial last line that was never sent, which readers skip and the
next writer cuts off. The collector's HTTP process never opens the database: it keeps
an index of the map in memory (16 bytes a link: sorted numpy arrays of code and file
offset), reads newly appended lines when a code is not found, and reads the one line
it needs from the file on a click.

The collector serves `/s/{code}` (tracking.py); activation imports the map from here to
write it; the collector never imports activation.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jingzhun.core.workspace import Workspace

MAP_DIR = ".jingzhun/short_links"
LOCK_FILE = ".lock"
SUFFIX = ".tsv"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_LENGTH = 10
CODE_SPACE = len(ALPHABET) ** CODE_LENGTH  # 62**10 ≈ 8.4e17 < 2**64: a code fits a uint64
_DIGITS = np.full(256, 255, dtype=np.uint8)
_DIGITS[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(len(ALPHABET), dtype=np.uint8)
_POWERS = np.array([len(ALPHABET) ** i for i in range(CODE_LENGTH - 1, -1, -1)], dtype=np.uint64)
_CODE = re.compile(f"[0-9A-Za-z]{{{CODE_LENGTH}}}")
_FILE_BITS = 40  # a location is file number << 40 | byte offset of the line
_MAX_RUNS = 8  # sorted runs of the index before they are merged into one
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def encode_code(value: int) -> str:
    """A number below CODE_SPACE as its fixed-width base62 code."""
    digits = []
    for _ in range(CODE_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def decode_code(code: str) -> int | None:
    """The number a code stands for, or None if it is not a well-formed code."""
    if not _CODE.fullmatch(code):
        return None
    value = 0
    for char in code:
        value = value * len(ALPHABET) + ALPHABET.index(char)
    return value


@dataclass(frozen=True)
class ShortLink:
    """One line of the link map: the code and the delivery, campaign and target it stands for."""

    code: str
    delivery_id: str
    campaign_id: str
    url: str

    def line(self) -> bytes:
        url = _UNSAFE.sub(lambda found: f"%{ord(found.group()):02X}", self.url)  # never a tab or newline
        return f"{self.code}\t{self.delivery_id}\t{self.campaign_id}\t{url}\n".encode()

    def same_target(self, other: ShortLink) -> bool:
        return (self.delivery_id, self.url) == (other.delivery_id, other.url)


class ShortLinkClash(RuntimeError):
    """Another link already holds the code (the writer derives the next one)."""


def map_folder(workspace: Workspace) -> Path:
    return workspace.resolve(MAP_DIR)


@dataclass
class _MapFile:
    path: Path
    number: int
    inode: int
    indexed: int = 0  # bytes of whole lines in the index
    head: bytes = b""  # the first line's code: a file retired and begun again starts with another

    def replaced(self, stat: os.stat_result) -> bool:
        """Whether the file under this name is no longer the one indexed (checked when it changed)."""
        if stat.st_size == self.indexed:
            return False
        if stat.st_ino != self.inode or stat.st_size < self.indexed:
            return True
        return bool(self.head) and _read_head(self.path) != self.head


class LinkMap:
    """The link map of a workspace: an in-memory index over its append-only files.

    `find` answers from the index; `refresh` reads what was appended since (cheap when
    nothing was: a stat per file); `append` writes links durably. Entries are never
    changed or removed, so a stale index is only incomplete, never wrong.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, _MapFile] = {}
        self._numbered: list[_MapFile] = []
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted codes, locations)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(codes) for codes, _ in self._runs)

    @property
    def nbytes(self) -> int:
        """Memory the index holds: 16 bytes a link (code and location, 8 bytes each)."""
        return sum(codes.nbytes + locations.nbytes for codes, locations in self._runs)

    def find(self, code: str) -> ShortLink | None:
        """The link behind `code` as far as the index knows, or None."""
        value = decode_code(code)
        if value is None:
            return None
        key = np.uint64(value)
        for codes, locations in self._runs:
            at = int(np.searchsorted(codes, key))
            if at < len(codes) and codes[at] == key:
                return self._read(int(locations[at]), code)
        return None

    def refresh(self) -> int:
        """Index the whole lines appended since the last refresh; return how many."""
        with self._lock:
            added = 0
            for path, stat in self._map_files():
                known = self._files.get(path.name)
                if known is None or known.replaced(stat):  # new, or retired and begun again
                    known = self._add_file(path, stat.st_ino)
                added += self._index_tail(known, stat.st_size)
            if len(self._runs) > _MAX_RUNS:
                self._runs = [_merge(self._runs)]
            return added

    def append(self, campaign_id: str, links: Iterable[ShortLink]) -> int:
        """Write `links` durably to the campaign's map file; return how many were new.

        Under the map's lock the index is brought up to date first, so a code another
        writer took meanwhile is seen: the same link again is skipped, a different one
        raises `ShortLinkClash`. Returns once the lines (and a new file's name) are fsync'd.
        """
        with _locked(self.folder):
            self.refresh()
            fresh: dict[str, ShortLink] = {}
            for link in links:
                taken = fresh.get(link.code) or self.find(link.code)
                if taken is not None and not taken.same_target(link):
                    raise ShortLinkClash(link.code)
                if taken is None:
                    fresh[link.code] = link
            if fresh:
                _append_lines(self.folder / file_name(campaign_id), b"".join(link.line() for link in fresh.values()))
                self.refresh()
            return len(fresh)

    def _map_files(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        try:
            for entry in os.scandir(self.folder):
                if entry.name.endswith(SUFFIX):
                    with suppress(FileNotFoundError):
                        found.append((Path(entry.path), entry.stat()))
        except FileNotFoundError:
            pass
        return sorted(found, key=lambda item: item[0].name)

    def _add_file(self, path: Path, inode: int) -> _MapFile:
        added = _MapFile(path, len(self._numbered), inode)
        self._files[path.name] = added
        self._numbered.append(added)
        return added

    def _index_tail(self, mapped: _MapFile, size: int) -> int:
        if size <= mapped.indexed:
            return 0
        try:
            with mapped.path.open("rb") as handle:
                handle.seek(mapped.indexed)
                chunk = handle.read(size - mapped.indexed)
        except FileNotFoundError:
            return 0
        chunk = chunk[:chunk.rfind(b"\n") + 1]  # a partial last line is still being written, or never was
        if not chunk:
            return 0
        if not mapped.indexed:
            mapped.head = chunk[:CODE_LENGTH]
        codes, offsets = parse_codes(chunk)
        locations = (np.uint64(mapped.number) << np.uint64(_FILE_BITS)) + np.uint64(mapped.indexed) + offsets
        mapped.indexed += len(chunk)
        if len(codes):
            order = np.argsort(codes, kind="stable")
            self._runs = [*self._runs, (codes[order], locations[order])]  # a new list: `find` never sees half
        return len(codes)

    def _read(self, location: int, code: str) -> ShortLink | None:
        mapped = self._numbered[location >> _FILE_BITS]
        try:
            with mapped.path.open("rb") as handle:
                handle.seek(location & ((1 << _FILE_BITS) - 1))
                fields = handle.readline().rstrip(b"\n").decode("utf-8", "replace").split("\t")
        except OSError:  # the campaign's file was retired while the index still knew it
            return None
        if len(fields) != 4 or fields[0] != code:
            return None
        return ShortLink(*fields)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(CODE_LENGTH)
    except FileNotFoundError:
        return b""


def parse_codes(chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The codes (as numbers) of the whole lines in `chunk` and each line's offset, in bulk.

    A line that does not start with a well-formed code and a tab is skipped.
    """
    data = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if not len(ends):
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    starts = starts[ends - starts > CODE_LENGTH]
    digits = _DIGITS[data[starts[:, None] + np.arange(CODE_LENGTH)]]
    valid = (digits < len(ALPHABET)).all(axis=1) & (data[starts + CODE_LENGTH] == ord("\t"))
    codes = (digits[valid].astype(np.uint64) * _POWERS).sum(axis=1, dtype=np.uint64)
    return codes, starts[valid].astype(np.uint64)


def _merge(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    codes = np.concatenate([run[0] for run in runs])
    locations = np.concatenate([run[1] for run in runs])
    order = np.argsort(codes, kind="stable")
    return codes[order], locations[order]


def file_name(campaign_id: str) -> str:
    """The campaign's map file (campaign ids are already file-safe; anything else is made so)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", campaign_id).lstrip(".") + SUFFIX


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the map (between processes, and between threads: each opens its own)."""
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # targets may carry personal coupon codes
        _fsync_folder(folder.parent)
    with (folder / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _append_lines(path: Path, data: bytes) -> None:
    """Append whole lines and fsync them; a partial line a crash left behind is cut off first."""
    created = not path.exists()
    with path.open("ab+") as handle:  # appends go to the end, wherever the handle was
        size = handle.seek(0, os.SEEK_END)
        whole = _whole_lines_end(handle, size)
        if whole < size:
            handle.truncate(whole)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if created:  # the new file's name must survive a crash too
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _whole_lines_end(handle: BinaryIO, size: int) -> int:
    """Where the file's last whole line ends (its size, unless a crash cut a line short)."""
    end = size
    while end > 0:
        start = max(0, end - (1 if end == size else 65536))  # mostly one byte: the last newline
        handle.seek(start)
        block = handle.read(end - start)
        if b"\n" in block:
            return start + block.rfind(b"\n") + 1
        end = start
    return 0
