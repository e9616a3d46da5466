"""The rules of `./intradp faults`' table (intradp_ros.tools.faults_report), on hand-made observer events."""
from __future__ import annotations

import pytest

from intradp_ros.tools.faults_report import log_rate, prediction_error, scenario_row, seq_at, table

SPLIT, LOCAL = "m@416x416|0|18|0|1x8|raw", "m@416x416|44|44|0|1x1|raw"


def plan(t, spec, predicted_ms=200.0, local_ms=400.0, reason="", settled=True):
    return {"ev": "plan", "t": t, "plan": spec, "predicted_ms": predicted_ms, "local_ms": local_ms,
            "local_spec": LOCAL, "reason": reason, "settled": settled}


def det(seq, stamp, lat_ms, spec=SPLIT):
    return {"ev": "det", "seq": seq, "stamp": stamp, "lat_ms": lat_ms, "plan": spec, "t": stamp + lat_ms / 1e3}


def diag(t, processed, errors=0):
    return {"ev": "diag", "node": "robot_node", "t": t, "values": {"frames_processed": str(processed),
                                                                   "frame_errors": str(errors)}}


def test_frames_in_answered_in_time_stale_and_recovery():
    ev = [plan(0.0, SPLIT), diag(0.5, 10), plan(5.0, LOCAL, reason="the edge is gone"), plan(9.0, SPLIT),
          det(11, 1.0, 150.0), det(12, 2.0, 900.0),    # 900 ms: within max(1 s, 4 x 200 ms) + 400 ms
          det(13, 5.5, 1500.0),                        # over 1.4 s: answered, not in time
          det(13, 5.5, 1600.0),                        # a second result for frame 13: counted as stale
          det(15, 6.0, 6000.0, LOCAL),                 # older than max_result_age_s: stale
          det(16, 9.5, 160.0), diag(12.0, 16)]
    assert seq_at(ev, 0.6) == 10 and seq_at(ev, 20.0) == 16 and seq_at(ev, 0.1) == 0
    r = scenario_row("x", ev, 11, 16, restored_t=9.0)
    assert (r.frames_in, r.answered, r.in_time, r.stale_published) == (6, 5, 3, 2)   # frame 14: no answer
    assert r.max_latency_s == pytest.approx(6.0) and r.recovery_s == pytest.approx(0.66)
    assert scenario_row("y", ev, 11, 12, restored_t=20.0).recovery_s == float("inf")
    assert "| x | 6 | 5 | 3 | 6.00 | 2 | 0.7 |" in table([r])


def test_prediction_error_and_log_rate():
    ev = [plan(0.0, SPLIT, predicted_ms=200.0), det(1, 1.0, 220.0), det(2, 2.0, 240.0), det(3, 3.0, 500.0, LOCAL)]
    assert prediction_error(ev, 0.0, 10.0) == (SPLIT, 230.0, 200.0)
    assert prediction_error([], 0.0, 1.0) is None
    lines = [f"[WARN] [{100 + i * 0.1:.9f}] [edge_node]: x" for i in range(25)] + ["not a log line"]
    assert log_rate(lines, 100.0, 103.0) == 10 and log_rate(lines, 200.0, 201.0) == 0
