"""nodes.receiver: subscriptions served on their own thread, off the executor, with real rclpy entities."""
import threading
import time

import pytest
import rclpy
from rclpy.qos import QoSProfile
from std_msgs.msg import String

from intradp_ros.nodes.receiver import Receiver, _arrival, deserialized


@pytest.fixture
def node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    n = rclpy.create_node("receiver_test", context=ctx, start_parameter_services=False)
    yield n
    n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_two_topics_each_to_its_handler_in_order_with_reception_times(node):
    got, bad, done = {"a": [], "b": []}, [], threading.Event()

    def handle(key):
        def h(msg, arrived):
            got[key].append((msg.data, arrived))
            if len(got["a"]) == 5 and len(got["b"]) == 5:
                done.set()
        return h
    rx = Receiver(node, "t")
    for key in ("a", "b"):
        rx.add(String, f"/rx_test_{key}", QoSProfile(depth=10),
               deserialized(String, handle(key), lambda c, line: bad.append((c, line)), "bad", key))
    ticks = []
    rx.every(0.05, lambda: ticks.append(time.monotonic()))
    rx.start()
    pubs = {k: node.create_publisher(String, f"/rx_test_{k}", QoSProfile(depth=10)) for k in ("a", "b")}
    deadline = time.monotonic() + 10
    while not all(p.get_subscription_count() for p in pubs.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    for i in range(5):
        for k, p in pubs.items():
            p.publish(String(data=f"{k}{i}"))
    assert done.wait(10), got
    rx.close()
    assert [d for d, _ in got["a"]] == [f"a{i}" for i in range(5)]
    assert [d for d, _ in got["b"]] == [f"b{i}" for i in range(5)]
    assert all(t0 - 0.5 <= t <= time.monotonic() for k in got for _, t in got[k])
    assert len(ticks) >= 1 and not bad                  # the timer ran on the receiver's thread too


def test_garbage_is_refused_with_its_counter_not_raised(node):
    refused = []
    on_raw = deserialized(String, lambda m, a: pytest.fail("garbage was handled"),
                          lambda c, line: refused.append(c), "bad_things", "things")
    on_raw(b"\x00\x01\x00\x00\xff\xff\xff\x7f", time.monotonic())
    assert refused == ["bad_things"]


def test_close_returns_at_once_without_messages(node):
    rx = Receiver(node, "idle")
    rx.add(String, "/rx_test_idle", QoSProfile(depth=1), lambda raw, arrived: None)
    rx.start()
    t = time.monotonic()
    rx.close()                                  # woken by its guard condition, not by a polling timeout
    assert time.monotonic() - t < 0.5


def test_arrival_is_the_middlewares_reception_time_on_the_monotonic_clock():
    now_wall, now_mono = time.time_ns(), time.monotonic()
    assert abs(_arrival({"received_timestamp": now_wall - 200_000_000}) - (now_mono - 0.2)) < 0.05
    assert abs(_arrival({}) - time.monotonic()) < 0.05
    assert time.monotonic() - _arrival({"received_timestamp": 1}) <= 1.05     # a clock step: at most 1 s back
