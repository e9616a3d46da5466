"""A fleet on one edge, pure logic: the fair queue of robots' tiles, the per-robot load accounts, the robot's damped
edge-load factor and how it prices plans."""
from __future__ import annotations

import random
import threading

from intradp_ros.engine.fleet import FairQueue, FleetLoad
from intradp_ros.robot.edge_load import EdgeLoad


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _serve(q: FairQueue, cost: dict[str, float], n: int) -> list[str]:
    order = []
    for _ in range(n):
        session, _, _ = q.get(timeout=0.0)
        q.done(session, cost[session])
        order.append(session)
    return order


def test_a_robot_with_a_long_backlog_does_not_starve_one_with_a_few_tiles():
    q = FairQueue()
    for i in range(50):
        q.put("heavy", i)
    for i in range(3):
        q.put("light", i)
    order = _serve(q, {"heavy": 0.05, "light": 0.01}, 10)
    # all of light's tiles come out within the first few turns, not after heavy's fifty
    assert order[:6].count("light") == 3


def test_turns_share_compute_seconds_not_tiles():
    q = FairQueue()
    for i in range(200):
        q.put("a", i)
        q.put("b", i)
    order = _serve(q, {"a": 0.03, "b": 0.01}, 120)
    spent_a, spent_b = order.count("a") * 0.03, order.count("b") * 0.01
    assert abs(spent_a - spent_b) <= 0.03 + 1e-9          # within one tile of equal service
    assert order.count("b") > 2 * order.count("a")


def test_each_robots_tiles_keep_their_order():
    q = FairQueue()
    for i in range(20):
        q.put("a", i)
        q.put("b", 100 + i)
    got = {"a": [], "b": []}
    for _ in range(40):
        s, _, item = q.get(timeout=0.0)
        q.done(s, 0.01)
        got[s].append(item)
    assert got["a"] == list(range(20)) and got["b"] == [100 + i for i in range(20)]


def test_an_idle_robot_rejoins_at_the_fleets_time_without_a_burst_of_credit():
    q = FairQueue()
    for i in range(100):
        q.put("busy", i)
    _serve(q, {"busy": 0.1}, 50)                         # 5 s of service to busy alone
    for i in range(10):
        q.put("late", i)
    order = _serve(q, {"busy": 0.1, "late": 0.1}, 10)
    assert 4 <= order.count("late") <= 6                 # alternates, rather than ten turns in a row


def test_a_frame_begun_keeps_its_turn_while_its_rows_stream_in():
    q = FairQueue()
    for s in ("b", "c", "d"):                              # the others have had as much edge as a's frame start
        q.put(s, "warm", frame=0)
        _serve(q, {s: 0.1}, 1)
    q.put("a", "a0", frame=7)
    assert _serve(q, {"a": 0.1}, 1) == ["a"]
    order = []
    for chunk in range(1, 8):       # while each of a's chunks crosses the link, the others queue whole frames
        for s in ("b", "c", "d"):
            q.put(s, f"{s}{chunk}", frame=chunk)
        q.put("a", f"a{chunk}", frame=7)
        s, _, item = q.get(timeout=0.0)
        q.done(s, 0.01 if s == "a" else 0.1)
        order.append(item)
    # every chunk of a's frame runs as it arrives, not after the three frames queued meanwhile
    assert order == [f"a{i}" for i in range(1, 8)]


def test_tiles_without_a_frame_take_turns_of_their_own():
    q = FairQueue()
    for s in ("b", "c"):
        q.put(s, "warm")
        _serve(q, {s: 0.1}, 1)
    q.put("a", "a0")
    _serve(q, {"a": 0.1}, 1)
    q.put("b", "b1")
    q.put("c", "c1")
    q.put("a", "a1")
    assert [q.get(timeout=0.0)[2] for _ in range(1)] == ["b1"]


def test_a_frame_that_never_ends_holds_the_edge_only_for_its_credit():
    q = FairQueue()
    for i in range(200):
        q.put("endless", i, frame=1)
        q.put("other", i, frame=i)
    order = _serve(q, {"endless": 0.05, "other": 0.05}, 60)
    head = order.index("other")
    assert head * 0.05 <= FairQueue.FRAME_CREDIT_S + 0.05      # at most its credit ahead
    assert abs(order.count("endless") - order.count("other")) <= FairQueue.FRAME_CREDIT_S / 0.05 + 1


def test_forget_drops_a_robots_queue_and_get_times_out_or_wakes():
    q = FairQueue()
    q.put("gone", 1)
    q.put("gone", 2)
    assert q.forget("gone") == [1, 2]
    assert q.get(timeout=0.01) is None
    threading.Timer(0.05, q.put, ("x", 7)).start()
    assert q.get(timeout=5.0)[2] == 7
    q.close()
    assert q.get(timeout=5.0) is None


def test_fleet_load_reports_busy_fraction_service_and_queueing_per_robot():
    clock = Clock()
    load = FleetLoad(window_s=3.0, clock=clock)
    for _ in range(20):                                  # a: 20 tiles of 50 ms over 2 s, a frame per 2 tiles
        clock.t += 0.1
        load.served("a", 0.05, 0.02, frame_done=True)
        load.served("a", 0.0, 0.0, frame_done=False)
    load.served("c", 0.1, 0.0, frame_done=True)          # c: one tile at the window's end
    load.seen("b")                                       # announced, all-local: on the roster, no load
    snap = {r.session: r for r in load.snapshot()}
    assert abs(snap["a"].busy_fraction - 0.5) < 0.06
    assert abs(snap["a"].service_ms - 50.0) < 1e-6 and abs(snap["a"].queue_ms - 10.0) < 1e-6
    assert snap["b"].busy_fraction == 0.0 and snap["b"].frames == 0
    assert sum(r.busy_fraction for r in snap.values()) <= 1.0   # one span for all: c's 0.1 s is not 100 %
    assert abs(snap["c"].busy_fraction - 0.1 / 1.95) < 1e-6
    clock.t += 4.0                                       # the window passes: a's load is gone
    assert {r.session: r.busy_fraction for r in load.snapshot()}["a"] == 0.0
    assert sorted(load.quiet_since(3.5)) == ["a", "b", "c"]
    load.forget("a")
    load.forget("c")
    assert [r.session for r in load.snapshot()] == ["b"]


def test_edge_load_factor_is_smoothed_and_replans_only_on_a_real_move_after_a_hold():
    clock = Clock()
    el = EdgeLoad(rng=random.Random(1), clock=clock)
    el.observe(0.0)
    assert el.factor == 1.0
    assert not el.should_replan(None)
    clock.t += 0.5
    el.observe(0.75)                                     # a step: a quarter of the way there in 0.5 s
    assert 1.0 < el.factor < 1.4
    for _ in range(20):
        clock.t += 0.5
        el.observe(0.75)
    assert abs(el.factor - 4.0) < 0.1
    assert el.should_replan(1.0)                         # 4x against 1x: re-plan
    assert not el.should_replan(1.0)                     # ... but not again within the hold
    assert not el.should_replan(el.factor * 1.1)         # a 10 % move is noise
    clock.t += 2 * EdgeLoad.HOLD_S
    assert el.should_replan(1.0)
    el.observe(1.0)
    clock.t += 100
    el.observe(1.0)
    assert el.factor == 1.0 / (1.0 - EdgeLoad.MAX_RHO)   # saturated: priced 10x, never infinite
    el.reset()
    assert el.factor == 1.0


def test_edge_load_factor_is_at_most_the_number_of_robots_sharing_the_edge():
    """The fair queue gives each of N robots at least 1/N of the edge, however busy the others keep it."""
    clock = Clock()
    el = EdgeLoad(rng=random.Random(3), clock=clock)
    el.observe(0.75, robots=4)
    assert el.factor == 4.0                               # 1/(1-0.75) = 4 = N: the cap does not bind
    el.observe(0.95, robots=4)
    clock.t += 100
    el.observe(0.95, robots=4)
    assert el.factor == 4.0                               # 1/(1-0.9) = 10 without the cap
    el.observe(0.95, robots=2)
    assert el.factor == 2.0
    el.observe(0.95)                                      # unknown count: no cap
    assert el.factor == 1.0 / (1.0 - EdgeLoad.MAX_RHO)


def test_robots_replan_at_different_times():
    clocks = [Clock() for _ in range(4)]
    loads = [EdgeLoad(rng=random.Random(i), clock=c) for i, c in enumerate(clocks)]
    for el in loads:
        el.observe(0.8)
        assert el.should_replan(1.0)
    assert len({el._next for el in loads}) == 4          # randomised hold: next chances at distinct times


def test_heard_says_why_to_replan_only_when_priced():
    clock = Clock()
    el = EdgeLoad(rng=random.Random(2), clock=clock)
    assert el.heard(0.5, None) is None                   # not priced (or a fixed plan): never asks
    why = el.heard(0.5, 1.0)
    assert why and "50%" in why and "2.00x" in why


def test_fleet_load_counts_the_time_each_robot_waited_behind_the_others():
    clock = Clock()
    load = FleetLoad(window_s=3.0, clock=clock)
    load.served("b", 0.01, 0.0, frame_done=True)          # b is known to the account
    for _ in range(10):                                   # a's 80 ms tiles while b has tiles queued
        clock.t += 0.1
        load.served("a", 0.08, 0.0, frame_done=True, waiting=("b",))
        load.served("b", 0.02, 0.08, frame_done=True)     # then b's own 20 ms tile, nobody waiting
    snap = {r.session: r for r in load.snapshot()}
    assert abs(snap["b"].behind_ms - 80.0 * 10 / 11) < 1e-6    # 10 x 80 ms behind a, over b's 11 frames
    assert snap["a"].behind_ms == 0.0
    assert abs(snap["b"].service_ms - (0.01 + 10 * 0.02) * 1e3 / 11) < 1e-6   # b's own service only


def test_measured_stretch_wins_over_the_estimate_from_the_others_share():
    clock = Clock()
    el = EdgeLoad(rng=random.Random(4), clock=clock)
    el.observe(0.88, robots=2, stretch=1.1)          # a closed-loop pair interleaves: barely slower than alone
    assert abs(el.factor - 1.1) < 1e-9
    el.observe(0.88, robots=2, stretch=None)         # not on the edge lately: 1/(1-0.88), capped at 2
    clock.t += 100
    el.observe(0.88, robots=2, stretch=None)
    assert el.factor == 2.0
    why = el.heard(0.5, 1.0, robots=4, stretch=3.0)
    assert why and "stretch its edge part 3.00x" in why
