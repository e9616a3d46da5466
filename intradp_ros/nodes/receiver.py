"""Hot subscriptions served on their own thread, without rclpy's executor.

rclpy's executor rebuilds its wait set in Python for every message or timer: on this project's 2-core host it costs
about 1.2 ms of CPU per wake-up for robot_node (30 entities with their QoS event handlers), the better part of the
quarter-core robot's CPU per frame under all-offload (camera image, FrameTiming, LinkEstimate, heartbeats). And
measured in `./intradp faults`, a flood of 500 garbage outputs a second cost the aggregator 1.5 CPU seconds in
10 s although each was dropped after reading 20 bytes. So the data-plane topics are received here instead: one
wait set holding a few subscriptions (and their QoS events: liveliness, incompatible QoS), then every message
already queued taken in a row, serialized (a few us each), and handed to that subscription's ``on_raw``.
:func:`sessions` makes the ``on_raw`` of a tile topic: the session is read from the bytes (tile_session) and only
a session ``admit`` accepts is deserialized.

Threads: the receiver's own thread waits, takes and runs every ``on_raw``, event callback and :meth:`every`
function, in arrival order.
The subscriptions live on a helper node (``<node>_rx_<name>``, in the node's namespace and context, no parameter
services) that no executor spins. Subscriptions are added before :meth:`start`, or later from the receiver's own
thread (an ``on_raw`` or :meth:`every` function: robot_node adds the edges it discovers); the wait set is rebuilt
when their number changed.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.serialization import deserialize_message

from intradp_ros.engine.admission import Refusal
from intradp_ros.nodes.common import name_native_thread, tile_session

__all__ = ["Receiver", "sessions", "deserialized"]


class Receiver:

    def __init__(self, node, name: str):
        self._node = rclpy.create_node(f"{node.get_name()}_rx_{name}", namespace=node.get_namespace(),
                                       context=node.context, start_parameter_services=False, enable_rosout=False)
        self._name, self._log = name, node.get_logger()
        self._subs: list[tuple[object, Callable[[bytes, float], None]]] = []
        self._tick: tuple[float, Callable[[], None]] | None = None
        self._stop = threading.Event()
        self._wake = self._node.create_guard_condition(lambda: None)    # close() wakes the wait with it
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"rx {name}")

    def add(self, msg_type, topic: str, qos, on_raw: Callable[[bytes, float], None], event_callbacks=None):
        """Receive ``topic``: ``on_raw(serialized bytes, arrival)`` for each message, on the receiver's thread
        (arrival: when the middleware received it, on ``time.monotonic()``'s clock)."""
        kwargs = {} if event_callbacks is None else {"event_callbacks": event_callbacks}
        sub = self._node.create_subscription(msg_type, topic, _never_called, qos, raw=True, **kwargs)
        self._subs.append((sub, on_raw))
        return sub

    def every(self, period_s: float, fn: Callable[[], None]) -> None:
        """Also call ``fn()`` on the receiver's thread after every wake-up, and ``period_s`` after the last one
        when nothing arrives (a timer that rides on the messages: each wake-up of rcl's wait costs ~0.2 ms of a
        host core, so periodic messages such as heartbeats make the timer's own wake-ups unnecessary)."""
        self._tick = (float(period_s), fn)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def _loop(self) -> None:
        name_native_thread()
        ctx, size = self._node.context, -1
        due = time.monotonic() + (self._tick[0] if self._tick else 0.0)
        while not self._stop.is_set():
            if len(self._subs) != size:          # at the start, and after a subscription was added here
                size = len(self._subs)
                events = [h for sub, _ in self._subs for h in sub.event_handlers]
                try:
                    with ctx.handle:
                        ws = _rclpy.WaitSet(size, 1, 0, 0, 0, len(events), ctx.handle)
                except Exception:  # noqa: BLE001 - the context shut down under us
                    return
            timeout_ns = max(0, int((due - time.monotonic()) * 1e9)) if self._tick else -1    # -1: until data
            try:
                subs, ready = self._wait(ws, events, timeout_ns)
            except Exception:  # noqa: BLE001 - the context shut down under us: stop quietly
                return
            for sub, on_raw in subs:
                self._guard(self._drain, sub, on_raw)
            for h in ready:
                self._guard(_run_event, h)
            if self._tick:
                due = time.monotonic() + self._tick[0]
                self._guard(self._tick[1])

    def _guard(self, fn, *args) -> None:
        """A callback that raises is a bug to report, not the end of the thread every message of these topics
        depends on."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self._log.error(f"rx {self._name}: {getattr(fn, '__qualname__', fn)} failed: {e!r}",
                            throttle_duration_sec=1.0)

    def _wait(self, ws, events, timeout_ns: int) -> tuple[list, list]:
        """Block until a subscription has data or an event fired (rcl's wait set, as rclpy's executor uses it,
        made once); returns the subscriptions and the event handlers that are ready."""
        with self._node.context.handle:
            ws.clear_entities()
            with self._wake.handle:
                ws.add_guard_condition(self._wake.handle)
            for sub, _ in self._subs:
                with sub.handle:
                    ws.add_subscription(sub.handle)
            for h in events:
                with h:
                    h.add_to_wait_set(ws)
            ws.wait(timeout_ns)
            ready = ws.get_ready_entities("subscription")
            subs = [(sub, f) for sub, f in self._subs if sub.handle.pointer in ready]
            return subs, [h for h in events if h.is_ready(ws)]

    @staticmethod
    def _drain(sub, on_raw, limit: int = 4096) -> None:
        """Take every message already queued (at most ``limit``): ``take_message``, what rclpy's executor calls."""
        for _ in range(limit):
            try:
                with sub.handle:
                    got = sub.handle.take_message(sub.msg_type, sub.raw)
            except Exception:  # noqa: BLE001 - the subscription was destroyed (shutdown)
                return
            if got is None:
                return
            on_raw(got[0], _arrival(got[1]))

    def close(self) -> None:
        self._stop.set()
        self._wake.trigger()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
        self._node.destroy_node()


def _arrival(info) -> float:
    """When the middleware received the message, on ``time.monotonic()``'s clock: its reception timestamp (wall
    clock, set by the DDS thread as the sample completed), not when this thread got to it, which a busy process
    delays (the edge's estimate of the link times chunk arrivals with it)."""
    received = info.get("received_timestamp") if isinstance(info, dict) else None
    now = time.monotonic()
    if not received:
        return now
    return now - min(max(time.time_ns() - received, 0), 1_000_000_000) / 1e9     # a wall-clock step: at most 1 s


def _run_event(handler) -> None:
    """A ready QoS event handler's callback, run here (what the executor would do with the waitable)."""
    data = handler.take_data()
    coro = handler.execute(data)
    try:
        coro.send(None)
    except StopIteration:
        pass
    finally:
        coro.close()


def deserialized(msg_type, handle: Callable, refuse: Callable[[str, str], None], bad: str, name: str):
    """An ``on_raw`` that deserializes and calls ``handle(msg, arrived)``; garbage goes to ``refuse(bad, line)``."""
    def on_raw(raw: bytes, arrived: float) -> None:
        try:
            msg = deserialize_message(raw, msg_type)
        except Exception as e:  # noqa: BLE001 - a message that does not deserialize is garbage, not a crash
            refuse(bad, f"{name}: a message that does not deserialize ignored: {e}")
            return
        handle(msg, arrived)
    return on_raw


def sessions(msg_type, admit: Callable[[str], bool], handle: Callable, refuse: Callable[[str, str], None],
             bad: str, name: str):
    """The ``on_raw`` of a tile topic: a session ``admit`` refuses is dropped before deserializing."""
    take = deserialized(msg_type, handle, refuse, bad, name)

    def on_raw(raw: bytes, arrived: float) -> None:
        session = tile_session(raw)
        if session is not None and not admit(session):
            refuse(Refusal.FOREIGN.value, f"{name}: session {session} is not one this node serves: ignored")
            return
        take(raw, arrived)
    return on_raw


def _never_called(_msg) -> None:
    """The helper node is never spun: messages are taken by the receiver's thread."""
