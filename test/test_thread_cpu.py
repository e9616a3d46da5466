"""tools.thread_cpu reads per-thread CPU from /proc, and the nodes' threads carry their names to the OS."""
import os
import threading
import time

from intradp_ros.nodes.common import name_native_thread
from intradp_ros.tools.thread_cpu import thread_times, thread_wakes


def test_a_named_busy_thread_is_seen_by_name_with_its_cpu():
    started, done, seen = threading.Event(), threading.Event(), {}

    def work():
        name_native_thread()
        seen["tid"] = threading.get_native_id()
        seen["before"] = thread_times(os.getpid())[seen["tid"]]     # before it burns any CPU
        started.set()
        while not done.is_set():                                    # busy until the test has seen it
            pass

    t = threading.Thread(target=work, name="busy-probe-thread-long-name", daemon=True)
    t.start()
    assert started.wait(10)
    before, deadline, after = seen["before"], time.monotonic() + 30, None
    while time.monotonic() < deadline:
        after = thread_times(os.getpid())[seen["tid"]]
        if after[1] + after[2] >= before[1] + before[2] + 5:
            break
        time.sleep(0.01)
    done.set()
    t.join()
    assert after[0] == "busy-probe-thre"              # Linux keeps 15 bytes of the name
    assert after[1] + after[2] >= before[1] + before[2] + 5


def test_a_thread_that_waits_is_counted_waking_up():
    ready, go, waited, stop = (threading.Event() for _ in range(4))
    seen = {}

    def sleeper():
        seen["tid"] = threading.get_native_id()
        ready.set()
        go.wait()
        for _ in range(20):                                         # 20 waits that time out: 20 wake-ups
            stop.wait(0.002)
        waited.set()
        stop.wait()                                                 # alive until the test has read it

    t = threading.Thread(target=sleeper, daemon=True)
    t.start()
    assert ready.wait(10)
    before = thread_wakes(os.getpid())[seen["tid"]]
    go.set()
    assert waited.wait(10)
    after = thread_wakes(os.getpid())[seen["tid"]]
    stop.set()
    t.join()
    assert after - before >= 20
