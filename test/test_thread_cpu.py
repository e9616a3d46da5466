"""tools.thread_cpu reads per-thread CPU from /proc, and the nodes' threads carry their names to the OS."""
import threading
import time

from intradp_ros.nodes.common import name_native_thread
from intradp_ros.tools.thread_cpu import thread_times


def test_a_named_busy_thread_is_seen_by_name_with_its_cpu():
    import os
    ready, done = threading.Event(), threading.Event()
    tid = []

    def work():
        name_native_thread()
        tid.append(threading.get_native_id())
        ready.set()
        t_end = time.thread_time() + 0.2
        while time.thread_time() < t_end:          # 200 ms of CPU, not of waiting
            pass
        done.wait(5)

    t = threading.Thread(target=work, name="busy-probe-thread-long-name")
    t.start()
    ready.wait(5)
    before = thread_times(os.getpid())[tid[0]]
    while t.is_alive() and thread_times(os.getpid())[tid[0]][1] + thread_times(os.getpid())[tid[0]][2] < \
            before[1] + before[2] + 5:
        time.sleep(0.01)
    after = thread_times(os.getpid())[tid[0]]
    done.set()
    t.join()
    assert after[0] == "busy-probe-thre"              # Linux keeps 15 bytes of the name
    assert after[1] + after[2] >= before[1] + before[2] + 5
