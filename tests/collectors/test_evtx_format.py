"""The structural scan: frames and damage found without decoding binary XML."""

from collectors.evtx_format import HEADER_BLOCK, scan


def _scan(evidence, rel):
    with open(evidence / rel, "rb") as fh:
        return scan(fh)


def test_clean_file(evidence):
    sc = _scan(evidence, "plaso/test_data/evtx/System.evtx")
    assert sc.damage() == []
    assert len(sc.frames) == 5009 and sc.chunks_in_file == 27 and sc.header_chunk_count == 27
    first = sc.frames[0]
    assert (first.number, first.offset, first.chunk) == (1, HEADER_BLOCK + 512, 0)
    assert first.written_ns == 1290311759626427100  # 2010-11-21T03:55:59.6264271Z


def test_dirty_file_with_more_chunks_than_the_header_says(evidence):
    sc = _scan(evidence, "omerbenamram-evtx/samples/sysmon.evtx")
    assert sc.damage() == [
        "dirty flag set (log not closed cleanly)",
        "header chunk count 1 vs 9 chunks in file",
        "8 chunk(s) with bad magic: [9, 10, 11, 12, 13, 14, 15, 16]",
    ]
    assert len(sc.frames) == 358


def test_truncated_file(evidence):
    sc = _scan(evidence, "plaso/test_data/evtx/System2.evtx")
    assert sc.truncated and sc.size == 200000
    assert "file truncated (partial last chunk)" in sc.damage()
    assert len(sc.frames) == 283  # whole records survive in the partial chunk


def test_chunk_slack_frames_are_found(evidence):
    sc = _scan(evidence, "omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx")
    assert len(sc.frames) == 1944  # 1774 in the chunks' used space + 170 older records (32 past a damaged frame)
    assert [(g.start, g.end, g.numbers) for g in sc.gaps] == [(0x18e98, 0x19178, range(463011, 463012))]


def test_not_evtx(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"\0" * 100)
    with open(p, "rb") as fh:
        sc = scan(fh)
    assert sc.frames == [] and sc.damage() == ["file header magic missing"]
