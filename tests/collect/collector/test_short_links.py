"""Short links on the collector: the link map (append, index, crash) and `/s/{code}` on a
real server on 127.0.0.1 — a click is logged as `Link Clicked` and redirected, an unknown
code gets a 404 page, a link appended while the server runs is found."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import orjson
import pytest

from jingzhun.collect.collector.link_map import (
    ALPHABET,
    CODE_LENGTH,
    CODE_SPACE,
    LinkMap,
    ShortLink,
    ShortLinkClash,
    decode_code,
    encode_code,
    file_name,
    map_folder,
    parse_codes,
)
from jingzhun.collect.collector.tracking import LINK_CLICKED, TRACKING_SOURCE_ID
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from tests.collect.collector.conftest import serving


def links_of(campaign: str, count: int, seed: int = 1) -> list[ShortLink]:
    chance = random.Random(seed)
    return [ShortLink(encode_code(chance.randrange(CODE_SPACE)), f"{chance.getrandbits(128):032x}", campaign,
                      f"https://shop.example.com/p/{i}?utm_source=sms") for i in range(count)]


def test_codes_round_trip_and_parse_in_bulk() -> None:
    for value in (0, 1, 61, 62, CODE_SPACE - 1, 123456789012345):
        code = encode_code(value)
        assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) and decode_code(code) == value
    assert decode_code("short") is None and decode_code("abc-efghij") is None and decode_code("0" * 11) is None
    sample = links_of("spring", 500)
    chunk = b"".join(link.line() for link in sample) + b"not a line\n" + b"x" * 30 + b"\n"
    codes, offsets = parse_codes(chunk)
    assert codes.tolist() == [decode_code(link.code) for link in sample]
    assert [chunk[o:o + CODE_LENGTH].decode() for o in offsets.tolist()] == [link.code for link in sample]


def test_the_map_finds_what_was_appended_by_anyone(workspace: Workspace) -> None:
    writer, reader = LinkMap(map_folder(workspace)), LinkMap(map_folder(workspace))
    first, second = links_of("spring", 3000), links_of("autumn", 40, seed=2)
    assert reader.refresh() == 0 and reader.find(first[0].code) is None  # no map yet
    assert writer.append("spring", first) == 3000
    assert writer.append("spring", first[:10]) == 0  # the same links again: nothing new
    for batch in range(0, 40, 4):  # many small appends: sorted runs, merged as they pile up
        writer.append("autumn", second[batch:batch + 4])
    assert reader.find(second[0].code) is None  # the index is only as fresh as its last refresh
    assert reader.refresh() == 3040 and len(reader) == 3040
    for link in random.Random(3).sample(first, 200) + second:
        assert reader.find(link.code) == link and writer.find(link.code) == link  # one run; many, merged
    unknown = encode_code((decode_code(first[0].code) + 1) % CODE_SPACE)
    assert reader.find(unknown) is None and reader.find("not-a-code") is None
    clash = ShortLink(first[5].code, "f" * 32, "autumn", "https://elsewhere.example.com/")
    with pytest.raises(ShortLinkClash):
        writer.append("autumn", [clash])
    assert reader.find(first[5].code) == first[5]
    control = ShortLink(encode_code(7), "d" * 32, "spring", "https://shop.example.com/a\tb\nc")
    writer.append("spring", [control])  # a control character never breaks a line
    reader.refresh()
    assert reader.find(control.code).url == "https://shop.example.com/a%09b%0Ac"
    (map_folder(workspace) / file_name("autumn")).unlink()  # a retired campaign: its links end
    assert reader.find(second[0].code) is None and reader.find(first[0].code) == first[0]
    writer.append("autumn", second[:3])  # the campaign's file begun again: indexed from its start
    assert reader.refresh() == 3 and reader.find(second[2].code) == second[2]
    assert reader.find(second[3].code) is None


def test_a_line_cut_short_by_a_crash_is_skipped_then_cut_off(workspace: Workspace) -> None:
    folder = map_folder(workspace)
    sent, never_sent, later = links_of("spring", 5), links_of("spring", 1, seed=9)[0], links_of("spring", 5, seed=4)
    LinkMap(folder).append("spring", sent)
    path = folder / file_name("spring")
    with path.open("ab") as handle:  # the writer died in the middle of its next append
        handle.write(never_sent.line()[:25])
    reader = LinkMap(folder)
    assert reader.refresh() == 5 and reader.find(never_sent.code) is None
    LinkMap(folder).append("spring", later)
    assert path.read_bytes() == b"".join(link.line() for link in sent + later)
    assert reader.refresh() == 5 and all(reader.find(link.code) == link for link in sent + later)


WRITER = """
import sys
from jingzhun.collect.collector.link_map import LinkMap, ShortLink, encode_code
links = LinkMap(__import__("pathlib").Path(sys.argv[1]))
for batch in range(100000):
    rows = [ShortLink(encode_code(batch * 1000 + i), f"{batch:016x}{i:016x}", "flash", f"https://x.cn/{batch}/{i}")
            for i in range(20)]
    links.append("flash", rows)
    print(batch, flush=True)  # "sent": the batch leaves only after its links are durable
"""


def test_a_writer_killed_mid_append_leaves_every_committed_link_resolvable(workspace: Workspace) -> None:
    folder = map_folder(workspace)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(folder)],
                              stdout=subprocess.PIPE, text=True)
    committed = []
    assert writer.stdout is not None
    for line in writer.stdout:
        committed.append(int(line))
        if len(committed) == 30:
            break
    time.sleep(random.Random().uniform(0, 0.05))  # somewhere inside a later append
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    index = LinkMap(folder)
    index.refresh()
    for batch in committed:
        for i in range(20):
            found = index.find(encode_code(batch * 1000 + i))
            assert found is not None and found.url == f"https://x.cn/{batch}/{i}"


def test_a_click_through_a_real_collector_is_logged_and_redirected(workspace: Workspace) -> None:
    links = LinkMap(map_folder(workspace))
    early = links_of("spring", 50)
    links.append("spring", early)
    with serving(workspace) as url:
        answer = httpx.get(f"{url}/s/{early[7].code}", follow_redirects=False, timeout=10)
        assert answer.status_code == 302 and answer.headers["location"] == early[7].url
        assert answer.headers["cache-control"].startswith("no-store")
        late = links_of("autumn", 3, seed=5)
        links.append("autumn", late)  # written while the server runs: found on its first click
        assert httpx.get(f"{url}/s/{late[2].code}", timeout=10, follow_redirects=False).headers["location"] \
            == late[2].url
        forged = encode_code((decode_code(early[7].code) + 1) % CODE_SPACE)
        for bad in (forged, early[7].code[:-1], "../../etc/passwd", early[7].code + "x"):
            refused = httpx.get(f"{url}/s/{bad}", follow_redirects=False, timeout=10)
            assert refused.status_code == 404
        assert refused.headers["content-type"].startswith("text/html") and "链接无效" in refused.text \
            and "This link is not valid" in refused.text
    with open_engine(workspace) as engine:
        events = engine.query("SELECT event, anonymous_id, source_id, properties FROM events "
                              "ORDER BY timestamp").to_pylist()
    assert [(e["event"], e["source_id"]) for e in events] == [(LINK_CLICKED, TRACKING_SOURCE_ID)] * 2
    assert [orjson.loads(e["properties"]) for e in events] == [
        {"delivery_id": link.delivery_id, "campaign_id": link.campaign_id, "url": link.url}
        for link in (early[7], late[2])]
    assert [e["anonymous_id"] for e in events] == [early[7].delivery_id, late[2].delivery_id]


def test_the_index_takes_sixteen_bytes_a_link(tmp_path: Path) -> None:
    links = LinkMap(tmp_path / "map")
    links.append("big", links_of("big", 20000, seed=6))
    index = LinkMap(tmp_path / "map")
    index.refresh()
    assert index.nbytes == 16 * 20000 and len(index) == 20000
