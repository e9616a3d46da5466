"""A hot subscription served on its own thread, without rclpy's executor.

rclpy's executor wraps every message in a task and rebuilds its wait set for each one: measured in
`./intradp faults`, a flood of 500 garbage outputs a second cost the quarter-core robot's aggregator 1.5 CPU
seconds in 10 s (about 300 us a message, 60 % of its quota) even though each was dropped after reading 20 bytes,
and the edge 5 s. The tiles and outputs topics are the ones a flood hits, so they are received here instead: one
wait set for the one subscription, then every message already queued taken in a row (a few us each), serialized:
its session is read from the bytes (tile_session), and only a session ``admit`` accepts is deserialized and
handed to ``handle``; the rest go to ``refuse(counter, line)``.

Threads: the receiver's own thread waits and takes; ``admit``, ``handle`` and ``refuse`` run on it. The
subscription lives on a helper node (``<node>_rx_<name>``, in the node's namespace and context, no parameter
services) that no executor spins.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import rclpy

from rclpy.serialization import deserialize_message

from intradp_ros.engine.admission import Refusal
from intradp_ros.nodes.common import tile_session

__all__ = ["Receiver"]


class Receiver:
    WAIT_NS = 100_000_000        # wake at least every 100 ms to notice close()

    def __init__(self, node, msg_type, topic: str, qos, name: str, admit: Callable[[str], bool],
                 handle: Callable, refuse: Callable[[str, str], None], bad: str):
        """``bad``: the counter of messages that do not deserialize."""
        self._node = rclpy.create_node(f"{node.get_name()}_rx_{name}", namespace=node.get_namespace(),
                                       context=node.context, start_parameter_services=False, enable_rosout=False)
        self.subscription = self._node.create_subscription(msg_type, topic, _never_called, qos, raw=True)
        self._msg_type, self._name, self._bad = msg_type, name, bad
        self._admit, self._handle, self._refuse = admit, handle, refuse
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"rx {name}")
        self._thread.start()

    def _loop(self) -> None:
        wait = self._waiter()
        while not self._stop.is_set():
            try:
                wait()
            except Exception:  # noqa: BLE001 - the context shut down under us: stop quietly
                return
            self._drain()

    def _drain(self, limit: int = 4096) -> None:
        """Take every message already queued (at most ``limit``): ``take_message``, what rclpy's executor calls."""
        sub = self.subscription
        for _ in range(limit):
            try:
                with sub.handle:
                    got = sub.handle.take_message(sub.msg_type, sub.raw)
            except Exception:  # noqa: BLE001 - the subscription was destroyed (shutdown)
                return
            if got is None:
                return
            self._take(got[0])

    def _take(self, raw: bytes) -> None:
        arrived = time.monotonic()
        session = tile_session(raw)
        if session is not None and not self._admit(session):
            self._refuse(Refusal.FOREIGN.value, f"{self._name}: session {session} is not one this node serves: "
                                                "ignored")
            return
        try:
            msg = deserialize_message(raw, self._msg_type)
        except Exception as e:  # noqa: BLE001 - a message that does not deserialize is garbage, not a crash
            self._refuse(self._bad, f"{self._name}: a message that does not deserialize ignored: {e}")
            return
        self._handle(msg, arrived)

    def _waiter(self) -> Callable[[], None]:
        """Block until the subscription has data (rcl's wait set, as rclpy's executor uses it), else poll."""
        try:
            from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
            sub, ctx = self.subscription, self._node.context

            def wait() -> None:
                with sub.handle, ctx.handle:
                    ws = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, ctx.handle)
                    ws.clear_entities()
                    ws.add_subscription(sub.handle)
                    ws.wait(self.WAIT_NS)
            return wait
        except (ImportError, AttributeError):
            return lambda: time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._node.destroy_node()


def _never_called(_msg) -> None:
    """The helper node is never spun: messages are taken by the receiver's thread."""
