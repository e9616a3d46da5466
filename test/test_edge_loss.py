"""The robot never goes blind: edge health from heartbeats and rescues, frames kept until answered, and the
aggregator's one result per frame (pure logic; the real processes are in test_edge_failover.py)."""
import pytest

from intradp_ros.robot.health import EdgeHealth, Health
from intradp_ros.robot.rescue import Kept, RescueBook


def test_heartbeats_make_the_edge_alive_and_silence_loses_it():
    h = EdgeHealth(timeout_s=1.0)
    assert h.check(0.0) is None and h.state is Health.UNKNOWN        # never heard: not alive, not lost
    h.heard(0.1)
    assert h.check(0.2) is Health.ALIVE and h.check(0.3) is None
    h.heard(1.0)
    assert h.check(1.9) is None                                       # 0.9 s of silence: still alive
    assert h.check(2.1) is Health.LOST and "no heartbeat for 1.1 s" in h.why
    assert h.check(2.5) is None                                       # lost once, said once
    h.heard(2.6)
    assert h.check(2.7) is None                                       # heard again, but within the backoff
    h.heard(3.2)
    assert h.check(3.2) is Health.ALIVE


def test_a_lapsed_lease_loses_the_edge_at_once_and_only_new_heartbeats_bring_it_back():
    h = EdgeHealth(timeout_s=1.5, backoff_s=1.0)
    assert h.lease_lost(0.0) is None                        # no edge yet: nothing to lose
    h.heard(0.0)
    assert h.check(0.1) is Health.ALIVE
    h.heard(0.5)
    assert h.lease_lost(0.6) is Health.LOST and "liveliness" in h.why   # long before the 1.5 s timeout
    assert h.lease_lost(0.7) is None and h.check(2.0) is None           # heartbeats from before do not count
    h.heard(2.1)
    assert h.check(2.1) is Health.ALIVE


def test_an_edge_that_beats_but_does_not_answer_is_lost_with_a_growing_backoff():
    h = EdgeHealth(timeout_s=1.0, max_rescues=2, backoff_s=1.0)
    t = 0.0
    h.heard(t)
    assert h.check(t) is Health.ALIVE
    backoffs = []
    for _ in range(3):
        h.rescued()
        assert h.check(t) is None                                     # one rescue: a late frame, not a dead edge
        h.rescued()
        assert h.check(t) is Health.LOST and "rescued" in h.why
        backoffs.append(h.backoff_s)
        t += h.backoff_s
        h.heard(t)
        assert h.check(t) is Health.ALIVE
    assert backoffs == [2.0, 4.0, 8.0]
    h.answered()                                                      # a frame answered in time: trusted again
    assert h.backoff_s == 1.0


def test_kept_frames_are_rescued_at_their_deadline_or_when_too_many_are_kept():
    book = RescueBook()
    for seq in range(1, 4):
        book.keep(Kept(seq, None, None, (640, 480), "plan", deadline=float(seq)))
    assert book.done(2) and not book.done(2)                          # answered: forgotten, once
    assert [k.seq for k in book.due(1.5)] == [1] and book.was_rescued(1) and not book.was_rescued(3)
    assert not book.done(1)                                           # its late answer finds nothing kept
    for seq in range(10, 10 + book.MAX_KEPT + 2):
        book.keep(Kept(seq, None, None, (640, 480), "plan", deadline=1e9))
    due = book.due(2.0)
    assert [k.seq for k in due] == [3, 10, 11] and len(book) == book.MAX_KEPT


@pytest.fixture(scope="module")
def agg():
    from intradp_ros.runtime import ModelConfig
    return ModelConfig(model="yolov3_tiny", weights="", input_size=96)


def _outputs(graph, plan, seq):
    import torch

    from intradp_ros.engine.executor import EdgeWorker, RobotWorker
    x = torch.rand(1, 3, 96, 96)
    to_edge, to_agg = [], []
    RobotWorker(graph).run_frame(seq, plan, x, lambda p: (to_edge if p.dest == "edge" else to_agg).append(p))
    edge = EdgeWorker(graph)
    for p in to_edge:
        to_agg += edge.on_packet(p)
    return [p for p in to_agg if p.sender == "robot"], [p for p in to_agg if p.sender == "edge"]


def test_the_aggregator_publishes_one_result_per_frame_whoever_completes_it(agg):
    from intradp_ros.engine.plan import Plan
    from intradp_ros.runtime import AggregatorRuntime, LateOutput
    rt = AggregatorRuntime(agg)
    g = rt.m.graph
    split = Plan("yolov3_tiny", 96, 96, 0, len(g.ops), 0, 1, 3)      # the edge computes every row, in 3 tiles
    local = Plan.local(g, "yolov3_tiny")
    # frame 1: the edge's parts are late; the robot's rescue (all-local) replaces them and is the one result
    _, edge1 = _outputs(g, split, 1)
    robot_local, _ = _outputs(g, local, 1)
    assert len(edge1) >= 3 and len(robot_local) == 2
    done = [fo for p in edge1[:1] + robot_local if (fo := rt.add(p)) is not None]
    assert len(done) == 1 and done[0].plan_spec == local.spec() and rt.replaced == 1
    for p in edge1[1:]:                                               # the rest of the edge's parts: late
        with pytest.raises(LateOutput):
            rt.add(p)
    # frame 2: the edge completes it first; the rescue that was already on its way is late
    robot2, edge2 = _outputs(g, split, 2)
    done = [fo for p in robot2 + edge2 if (fo := rt.add(p)) is not None]
    assert len(done) == 1 and done[0].plan_spec == split.spec()
    for p in _outputs(g, local, 2)[0]:
        with pytest.raises(LateOutput):
            rt.add(p)
    # frame 3: a rescue under way, then an edge part for it: late
    robot3, edge3 = _outputs(g, local, 3)[0], _outputs(g, split, 3)[1]
    assert rt.add(robot3[0]) is None
    with pytest.raises(LateOutput):
        rt.add(edge3[0])
    assert rt.add(robot3[1]) is not None
