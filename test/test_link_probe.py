"""When robot_node probes the link: the slow period after the last sample or probe, the fast one in doubt."""
import queue
import time

from intradp_ros.nodes.link_probe import ProbeSender


def _sender(period_s: float) -> tuple[ProbeSender, queue.Queue]:
    q: queue.Queue = queue.Queue()
    return ProbeSender(q, controller=None, log=None, cpu_share=1.0, period_s=period_s, kib=16), q


def test_a_probe_is_due_a_period_after_the_last_sample_and_sooner_in_doubt(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    p, q = _sender(10.0)
    assert not p.due(False) and not p.due(True)
    now[0] += ProbeSender.FAST_PERIOD_S
    assert p.due(True) and not p.due(False)               # in doubt: the fast period
    p.sampled()                                           # a sample came: nothing is due
    now[0] += 9.0
    assert p.due(True) and not p.due(False)
    now[0] += 1.0
    assert p.due(False)
    p.probe()                                             # a probe counts like a sample: not due again at once
    assert not p.due(True) and not p.due(False)
    msgs = [q.get_nowait() for _ in range(q.qsize())]
    assert len(msgs) == 4 and all(m[0].tensor == "__probe__" and len(m[0].data) == 4096 for m in msgs)
    assert len({m[0].frame_seq for m in msgs}) == 1


def test_probing_off_is_never_due(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    p, _ = _sender(0.0)
    now[0] += 3600.0
    assert not p.due(False) and not p.due(True)
