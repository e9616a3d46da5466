"""The robot controller's parts, each on its own: send cost, frame overhead, calibration, latency book, explorer."""
import pytest
import torch

from intradp_ros.engine.cost import Prediction
from intradp_ros.engine.graph import capture
from intradp_ros.engine.guard import PlanGuard
from intradp_ros.engine.plan import Plan
from intradp_ros.engine.profile import DeviceProfile
from intradp_ros.engine.search import Decision
from intradp_ros.models import build_model
from intradp_ros.robot.calibration import Calibration, DriftCause, Scales
from intradp_ros.robot.costs import DEFAULT_MSG_CPU_MS, FrameOverhead, SendCost
from intradp_ros.robot.explorer import Explorer
from intradp_ros.robot.latency import LatencyBook


@pytest.fixture(scope="module")
def graph():
    return capture(build_model("resnet18"), torch.zeros(1, 3, 128, 128))


def _synthetic(graph, ms_per_melem: float) -> DeviceProfile:
    op_ms = [ms_per_melem * op.nbytes / 4e6 + 0.01 for op in graph.ops]
    n = len(graph.ops)
    encs = ("raw", "fp16", "u8", "lz4", "zstd")
    return DeviceProfile(graph.key, "cpu", 1, op_ms, 0.02, {e: 1.0 for e in encs}, {e: 0.5 for e in encs},
                         {"raw": [1.0] * n, "fp16": [0.5] * n, "lz4": [0.6] * n, "zstd": [0.5] * n},
                         {o: 4000.0 for o in graph.outputs})


def test_send_cost_is_fitted_from_measured_messages_and_scaled_by_cpu_share():
    s = SendCost(cpu_share=0.25)
    assert s.per_message_and_mb()[0] == pytest.approx(DEFAULT_MSG_CPU_MS / 0.25)
    for mb in (0.001, 0.1, 0.5, 1.0) * 3:                      # cpu = 2 ms + 3 ms/MB, on a quarter core
        s.observe_send(int(mb * 1e6), 2.0 + 3.0 * mb)
    per_msg, per_mb = s.per_message_and_mb()
    assert per_msg == pytest.approx(8.0, rel=1e-3) and per_mb == pytest.approx(12.0, rel=1e-3)


def test_the_process_send_cost_from_two_bursts_is_a_floor_of_the_message_price():
    s = SendCost(cpu_share=0.5)
    base_msg, _ = s.per_message_and_mb()
    # 12 x 4 KiB cost 14.4 ms of process CPU, 12 x 64 KiB 26.2 ms: 1.15 ms per message + 16 ms per MB
    per_msg, per_mb = s.set_process_burst((12, 4096, 14.4), (12, 65536, 26.2))
    assert per_mb == pytest.approx((26.2 - 14.4) / 12 / ((65536 - 4096) / 1e6), rel=1e-6)
    assert per_msg == pytest.approx(14.4 / 12 - per_mb * 4096 / 1e6, rel=1e-6)
    msg, mb = s.per_message_and_mb()
    assert msg == pytest.approx(max(base_msg * 0.5, per_msg) / 0.5) and mb == pytest.approx(per_mb / 0.5)
    s.set_process_burst((12, 4096, 1.0), (12, 65536, 0.5))     # noise: never a negative slope
    assert s.process[1] == 0.0 and s.per_message_and_mb()[0] == pytest.approx(base_msg)


def test_packet_building_is_a_per_message_cost_once_measured():
    s = SendCost(cpu_share=1.0)
    for ms in range(7):
        s.observe_packing(float(ms))
    assert s.pack_ms() == 0.0                                  # fewer than 8 packets: not trusted yet
    s.observe_packing(7.0)
    assert s.pack_ms() == pytest.approx(3.5) and s.msg_ms() == pytest.approx(s.per_message_and_mb()[0] + 3.5)


def test_frame_overhead_is_measured_per_frame_and_offsets_unmeasured_predictions():
    o, guard = FrameOverhead(), PlanGuard(min_samples=2)
    guard.reset({"split": 100.0, "offload": 150.0})
    assert o.frame_ms() == 0.0                                 # nothing measured: no overhead assumed
    assert not o.observe(1, 5.0)                               # no intake recorded for frame 1: ignored
    for seq in range(1, 6):
        o.note_intake(seq, 30.0 + seq)                         # stamp -> compute start, per frame
        assert o.observe(seq, 10.0)                            # + the aggregator's time
    assert o.moved_since(None) and o.frame_ms() == pytest.approx(43.0)
    guard.offset = o.frame_ms()
    for _ in range(2):
        guard.observe("split", 180.0)
    # split measures 180; offload's 150 predicted + 43 measured overhead is not better: no switch to a plan
    # whose prediction only looked better because the overhead was left out
    assert guard.score("offload") == pytest.approx(193.0) and guard.pick("split") == "split"
    o.note_intake(6, 31.0)
    assert o.observe(6, 10.0) and not o.moved_since(43.0)     # within tolerance: nothing to re-report
    for seq in range(7, 15):
        o.note_intake(seq, 90.0)
        o.observe(seq, 10.0)
    assert o.moved_since(43.0) and o.frame_ms() == pytest.approx(100.0)
    assert not o.observe(7, 10.0)                              # each frame's intake pairs once


def test_measured_compute_recalibrates_the_profiles_and_reports_drift(graph):
    robot = _synthetic(graph, 40.0)
    cal = Calibration(graph, robot)
    cal.set_edge_profile(_synthetic(graph, 4.0))
    spec = Plan.local(graph, "resnet18").spec()
    planned = Scales()
    assert cal.scales() == Scales() and cal.drift(planned) is None
    for r in (1.1, 1.05, 1.12):
        cal.add("whole", spec, r)
    assert cal.drift(planned) is None                          # within 20 %: keep the plan
    for r in (1.4, 1.45, 1.5, 1.42):
        cal.add("whole", spec, r)
    assert cal.drift(planned).cause is DriftCause.COMPUTE and cal.scales().whole == pytest.approx(1.4)
    assert cal.drift(Scales(1.4, 1.0, 1.0)) is None
    for r in (0.8, 0.7, 0.75):                                 # row tiles are calibrated apart
        cal.add("tiles", spec, r)
    assert cal.drift(Scales(1.4, 1.0, 1.0))
    prof = cal.robot_profile(cal.scales())
    assert prof.compute_ms(3, 5, 10) == pytest.approx(0.75 * robot.compute_ms(3, 5, 10))
    assert prof.scale * prof.op_ms[3] == pytest.approx(1.4 * robot.op_ms[3])
    for r in (1.3, 1.25, 1.2):                                 # the edge, measured from FrameTiming, too
        cal.add("edge", spec, r)
    assert cal.drift(Scales(1.4, 0.75, 1.0)) and cal.scales().edge == pytest.approx(1.25)
    cal.set_edge_profile(_synthetic(graph, 8.0))               # another edge: its ratios start over
    assert cal.scales().edge == 1.0 and cal.own(spec, Scales()).edge == 1.0


def test_a_plan_s_own_frames_calibrate_it_apart_from_the_blend(graph):
    cal = Calibration(graph, _synthetic(graph, 40.0))
    local, cut = Plan.local(graph, "resnet18").spec(), Plan.cut(graph, "resnet18", 20).spec()
    for _ in range(5):
        cal.add("whole", cut, 1.0)
    for _ in range(3):
        cal.add("whole", local, 1.5)
    assert cal.scales().whole == pytest.approx(1.0)
    assert cal.own(local, cal.scales()).whole == pytest.approx(1.5)
    assert cal.own("never measured", Scales(0.9, 0.8, 0.7)) == Scales(0.9, 0.8, 0.7)
    assert set(cal.own_all(cal.scales())) == {local, cut}


def test_robot_frames_are_credited_by_what_the_profile_predicts_for_that_plan(graph):
    robot = _synthetic(graph, 400.0)
    cal = Calibration(graph, robot)
    local = Plan.local(graph, "resnet18").spec()
    whole, tiles = cal.expected("robot", local)
    assert whole == pytest.approx(sum(robot.op_ms)) and tiles == 0.0
    for _ in range(3):
        cal.observe_robot(local, 2.0 * whole, 0.0)             # tiles: none predicted, so none credited
    assert cal.scales() == Scales(2.0, 1.0, 1.0)
    cal.observe_edge(local, 50.0)                              # no edge profile yet: nothing to compare with
    assert cal.counts()["edge"] == 0


def test_a_trial_that_clearly_loses_is_measured_in_fewer_frames():
    """A trial whose every frame is slower than the median of a plan measured in full counts as measured after
    TRIAL_MIN_FRAMES frames; one with a frame that fast, or a plan that is not a trial, needs MEASURED_MIN_FRAMES."""
    book = LatencyBook()
    for spec, ms in [("full", 100.0)] * 5 + [("trial", 120.0), ("trial", 125.0), ("trial", 130.0),
                                            ("other", 120.0), ("other", 125.0), ("other", 130.0),
                                            ("close", 99.0), ("close", 125.0), ("close", 130.0)]:
        book.observe(spec, ms + 7.0)
    m = book.measured(7.0, trials={"trial", "close"})
    assert m["full"] == pytest.approx(100.0) and m["trial"] == pytest.approx(125.0)
    assert "other" not in m and "close" not in m
    for _ in range(2):
        book.observe("close", 137.0)
    assert book.measured(7.0, trials={"close"})["close"] == pytest.approx(130.0)
    assert book.observed["close"] == 5 and book.window("full") == [107.0] * 5
    book.clear()
    assert book.measured(7.0) == {} and not book.observed


def test_the_split_extra_is_learned_from_five_frames_and_never_negative():
    book = LatencyBook()
    for r in (30.0, 31.0, 29.0, 30.0):
        book.observe_split_residual(r)
    assert book.split_extra_ms() == 0.0
    book.observe_split_residual(30.0)
    assert book.split_extra_ms() == pytest.approx(30.0)
    for _ in range(24):
        book.observe_split_residual(-40.0)
    assert book.split_extra_ms() == 0.0


def test_exploration_tries_each_segment_once_and_a_few_per_link():
    """Trials: the best plan of each top segment priced within the margin, one at a time (a trial carries on until
    measured), never a variant of a segment already measured or tried, at most SEGMENTS per link."""
    g = capture(build_model("yolov3_tiny", weights=None), torch.zeros(1, 3, 416, 416))
    explorer = Explorer(g, "yolov3_tiny")
    seg = lambda k2, tiles=8, enc="raw": Plan("yolov3_tiny", 416, 416, 0, k2, 0, 1, tiles, enc)  # noqa: E731
    shortlist = [seg(10), seg(10, 4), seg(18), seg(1, 8, "lz4"), seg(1), seg(27), seg(35)]
    offload = Plan.offload(g, "yolov3_tiny")
    pred = lambda plan, ms, edge=50.0: Prediction(plan, plan.spec(), ms, 0.0, edge, 0.0, 0.0)  # noqa: E731
    decision = Decision(pred(offload, 100.0), {}, 0, pred(shortlist[0], 105.0), shortlist)
    prices = {seg(18).spec(): 120.0}                   # beyond the margin: never tried
    edge_ms: dict[str, float] = {}
    price = lambda plan: pred(plan, prices.get(plan.spec(), 105.0), edge_ms.get(plan.spec(), 50.0))  # noqa: E731

    def trials(measured: dict[str, float]) -> list[Plan]:
        tried = []
        while (trial := explorer.next_trial(decision, measured, price, 0.1)) is not None:
            spec = trial.plan.spec()
            assert explorer.trial == spec
            assert explorer.next_trial(decision, measured, price, 0.1).plan.spec() == spec   # carries on
            measured[spec] = 130.0
            tried.append(trial.plan)
            assert len(tried) <= explorer.SEGMENTS
        assert explorer.trial is None
        explorer.clear()
        return tried

    measured: dict[str, float] = {}
    tried = trials(measured)
    assert [(p.seg_start, p.seg_end) for p in tried] == [(0, 10), (0, 1)]   # (0,18) priced out of the margin
    assert tried[1] == seg(1, 8, "lz4")                        # its best plan, first in the shortlist
    assert explorer.next_trial(decision, measured, price, 0.1) is None      # measured segments are known ...
    # a segment whose edge share is worth less than the margin of the choice is passed over, and not counted
    edge_ms[seg(10).spec()] = 0.05 * 100.0
    assert [(p.seg_start, p.seg_end) for p in trials({})] == [(0, 1), (0, 27)]
    assert explorer.next_trial(decision, {}, price, 0.0) is None           # ... and margin 0 never explores


def test_the_bandwidth_in_use_moves_only_for_a_sustained_change(graph):
    from intradp_ros.robot.measurements import Measurements
    m = Measurements(graph, _synthetic(graph, 40.0))
    assert m.observe_bandwidth(25.0, 0.25) and m.bandwidth_in_use == 25.0      # the first estimate is used at once
    for mbps in (9.0, 40.0, 12.0, 30.0, 25.0, 28.0, 20.0):                      # a noisy fixed link: the median holds
        assert not m.observe_bandwidth(mbps, 0.25)
    assert m.bandwidth_in_use == 25.0
    moved = [m.observe_bandwidth(5.0, 0.25) for _ in range(12)]                 # the link really slowed down
    assert any(moved) and m.bandwidth_in_use < 0.75 * 25.0
    assert moved.index(True) >= m.BANDWIDTH_SUSTAIN - 1                         # after a few samples, not one


def test_the_guard_keeps_only_what_a_new_link_leaves_measured():
    g = PlanGuard(min_samples=2)
    g.reset({"local": 400.0, "offload": 200.0, "split": 150.0})
    for spec, ms in (("local", 380.0), ("offload", 210.0), ("split", 170.0)):
        for _ in range(3):
            g.observe(spec, ms)
    g.reset({"local": 400.0, "offload": 180.0, "split": 140.0}, keep=True)       # same link: all stay
    assert all(g.measured(s) is not None for s in ("local", "offload", "split"))
    g.reset({"local": 400.0, "offload": 180.0, "split": 140.0}, keep=("local", "gone"))   # a new link
    assert g.measured("local") == 380.0 and g.measured("offload") is None and g.measured("split") is None
    g.reset({"offload": 180.0}, keep=("local",))                                  # no longer a candidate
    assert g.measured("local") is None
    g.reset({"local": 400.0})
    assert g.measured("local") is None                                             # keep=False: nothing
