"""Admission (which packets a node takes) and LogLimiter (how much it writes about the rest): pure logic."""
from __future__ import annotations

import pytest

from intradp_ros.engine.admission import Admission, Refusal
from intradp_ros.engine.codec import CodecError, decode, encode
from intradp_ros.nodes.log_limit import LogLimiter


def test_foreign_sessions_duplicates_and_replays_are_refused():
    a = Admission(max_age_s=2.0, expected="")
    assert a.check("robot-a", 1, "edge", 0.0, 0.1) is Refusal.FOREIGN      # no session known yet: nothing
    a.expect("robot-a")
    assert a.check("robot-a", 1, "edge", 0.0, 0.1) is None
    a.finish("robot-a", 1)
    assert a.check("robot-a", 1, "edge", 0.0, 0.1) is Refusal.DUPLICATE
    assert a.check("robot-b", 2, "edge", 0.0, 0.1) is Refusal.FOREIGN
    for seq in range(2, 2 + a.WINDOW):
        a.finish("robot-a", seq)
    assert not a.is_finished("robot-a", 1)
    assert a.check("robot-a", 1, "edge", 0.0, 0.1) is Refusal.REPLAY       # older than all it remembers
    assert a.check("robot-a", 5000, "edge", 0.0, 0.1) is None


def test_age_is_judged_against_the_fastest_packet_whatever_the_clocks():
    a = Admission(max_age_s=2.0)                     # any session (the edge's view)
    offset = 3600.0                                  # the sender's clock is an hour behind ours
    for i in range(20):
        assert a.check("s", i, "robot", i * 0.1, offset + i * 0.1 + 0.02) is None
    assert a.check("s", 20, "robot", 2.0, offset + 2.0 + 1.5) is None       # 1.5 s slower: still in time
    assert a.check("s", 21, "robot", 2.1, offset + 2.1 + 10.0) is Refusal.STALE   # queued through an outage
    assert a.check("t", 1, "robot", 0.0, 99.0) is None                      # each session has its own reference
    assert Admission(max_age_s=0.0).check("s", 1, "robot", 0.0, 1e6) is None   # 0: no age limit


def test_sessions_are_bounded():
    a = Admission(max_age_s=1.0)
    for i in range(a.MAX_SESSIONS + 10):
        a.finish(f"s{i}", 1)
    assert not a.is_finished("s0", 1) and a.is_finished(f"s{a.MAX_SESSIONS + 9}", 1)


@pytest.mark.parametrize("encoding", ["lz4", "zstd"])
def test_a_payload_that_expands_beyond_its_shape_is_refused(encoding):
    import torch
    big, _ = encode(torch.zeros(1, 4, 1024, 1024), encoding)          # 16 MiB of zeros, a few KiB compressed
    with pytest.raises(CodecError, match="needs"):
        decode(big, encoding, "float32", (1, 4, 16, 16))
    ok, _ = encode(torch.ones(1, 4, 16, 16), encoding)
    assert decode(ok, encoding, "float32", (1, 4, 16, 16)).sum() == 1024


def test_log_lines_are_one_per_cause_and_period_with_a_summary():
    lines, now = [], [0.0]
    log = LogLimiter(lines.append, period_s=1.0, clock=lambda: now[0])
    for i in range(1000):
        now[0] = i * 0.01                      # 1000 events in 10 s
        log("bad_tiles", f"tile {i} rejected")
        log("replays", f"replay {i}")
    assert len(lines) <= 2 * 11
    assert lines[0] == "tile 0 rejected" and "more in the last" in lines[2]
    now[0] = 20.0
    log.flush()
    assert lines[-1].startswith("replays: ") and "latest: replay 999" in lines[-1]
    n = len(lines)
    log.flush()
    assert len(lines) == n                     # nothing new: nothing written


def test_the_session_is_read_from_a_serialized_tile_without_deserializing_it():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message

    from intradp_ros.msg import TensorTile
    from intradp_ros.nodes.common import tile_session
    for frame_id in ("", "c", "cam", "camera", "x" * 33):         # every alignment of the field after it
        for session in ("", "a", "abcdef0123456789"):
            m = TensorTile(session=session, data=bytes(10))
            m.header.frame_id = frame_id
            assert tile_session(serialize_message(m)) == session
    assert tile_session(b"garbage") is None and tile_session(b"\x00\x01\x00\x00" + b"\xff" * 40) is None
