"""One edge, many robots: a fair queue of their tiles and the load each robot puts on the edge.

:class:`FairQueue` holds each robot's tiles in its own FIFO (a robot's tiles must run in order: its frames' rows
arrive top to bottom) and hands the compute thread the next tile of the robot that has been served least, by
compute seconds (start-time fair queueing over service time): a robot that offloads its whole network cannot make
one that offloads a few rows wait behind its frames, and none starves. A robot that was idle rejoins at the
fleet's current virtual time, so idling earns it no burst of credit. Turns are taken per frame, not per tile: the
later tiles of a frame the edge has begun keep the frame's start tag, so a frame whose rows stream in (a split
plan's chunks arrive one by one) does not wait, chunk after chunk, behind the other robots' whole frames that
arrived after it began. That credit is bounded (``FRAME_CREDIT_S`` of compute per frame), so a frame that never
ends cannot hold the edge.

:class:`FleetLoad` keeps, per robot, its compute seconds, the queue delay of its tiles, how long its tiles waited
while the edge computed other robots' tiles, and its frames, over sliding windows of about ``window_s``, for the
edge's heartbeat (EdgeStatus): a robot prices the queueing it meets from its own time behind the others (measured)
or, while it does not use the edge, from the others' share of it.

Threading: FairQueue is shared by the receiver thread (:meth:`FairQueue.put`) and the compute thread
(:meth:`FairQueue.get`, :meth:`FairQueue.done`); its condition guards every field. FleetLoad is the compute
thread's, except :meth:`FleetLoad.snapshot`, which takes its lock (the heartbeat timer runs on the executor).
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time

__all__ = ["FairQueue", "FleetLoad", "RobotLoad"]


class FairQueue:
    """Per-session FIFOs served by least attained service, in turns of a frame (see the module docstring)."""

    FRAME_CREDIT_S = 0.5      # a frame's tiles keep its start tag for at most this much compute

    def __init__(self, clock=time.monotonic):
        self._cond = threading.Condition()
        self._fifo: dict[str, collections.deque] = {}     # session -> (queued at, frame, item)
        self._served: dict[str, float] = {}     # session -> virtual finish time (compute seconds received)
        self._frame: dict[str, tuple] = {}      # session -> (frame begun, its start tag, its compute so far)
        self._clock = clock
        self.closed = False

    def put(self, session: str, item, frame=None) -> None:
        """Queue ``item`` of ``session``; ``frame``: what it belongs to (None: a turn of its own)."""
        with self._cond:
            q = self._fifo.get(session)
            if q is None:
                q = self._fifo[session] = collections.deque()
            if not q:          # idle until now: rejoin at the backlogged robots' virtual time, not behind or ahead
                floor = min((self._served.get(s, 0.0) for s, f in self._fifo.items() if f and s != session),
                            default=self._served.get(session, 0.0))
                self._served[session] = max(self._served.get(session, 0.0), floor)
            q.append((self._clock(), frame, item))
            self._cond.notify()

    def _tag(self, session: str) -> float:
        """The start tag of ``session``'s next tile: its frame's while that frame lasts, else its service."""
        frame, start, spent = self._frame.get(session, (None, 0.0, 0.0))
        head = self._fifo[session][0][1]
        if head is not None and head == frame and spent < self.FRAME_CREDIT_S:
            return start
        return self._served.get(session, 0.0)

    def get(self, timeout: float) -> tuple[str, float, object] | None:
        """(session, queued at, item) of the least-served backlogged robot, or None after ``timeout`` or close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.closed or any(self._fifo.values()), timeout):
                return None
            if self.closed:
                return None
            session = min((s for s, q in self._fifo.items() if q), key=lambda s: (self._tag(s), self._fifo[s][0][0]))
            queued, frame, item = self._fifo[session].popleft()
            if frame is None or self._frame.get(session, (None,))[0] != frame:
                self._frame[session] = (frame, self._served.get(session, 0.0), 0.0)
            return session, queued, item

    def done(self, session: str, service_s: float) -> None:
        """The compute thread spent ``service_s`` on ``session``'s tile."""
        with self._cond:
            self._served[session] = self._served.get(session, 0.0) + service_s
            if session in self._frame:
                frame, start, spent = self._frame[session]
                self._frame[session] = (frame, start, spent + service_s)

    def forget(self, session: str) -> list:
        """Drop a robot that left: its queued items (returned) and its account."""
        with self._cond:
            q = self._fifo.pop(session, collections.deque())
            self._served.pop(session, None)
            self._frame.pop(session, None)
            return [item for _, _, item in q]

    def backlog(self) -> dict[str, int]:
        with self._cond:
            return {s: len(q) for s, q in self._fifo.items() if q}

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclasses.dataclass(frozen=True)
class RobotLoad:
    """One robot's use of the edge over the last window."""
    session: str
    busy_fraction: float          # compute seconds / wall seconds
    service_ms: float             # compute per frame (mean)
    queue_ms: float               # wait of a tile from arrival to compute (mean)
    frames: int
    behind_ms: float = 0.0        # per frame: time its tiles waited while the edge computed other robots' tiles


class FleetLoad:
    """Sliding-window accounts of each robot's compute and queueing (see the module docstring)."""

    def __init__(self, window_s: float = 3.0, clock=time.monotonic):
        self.window_s, self._clock = window_s, clock
        self._lock = threading.Lock()
        # session -> (time, service s, queue s, frames ended, s behind another robot's service)
        self._events: dict[str, collections.deque] = {}
        self.last_seen: dict[str, float] = {}
        self._since: float | None = None      # the first service: the window is shorter before a full one passed

    def served(self, session: str, service_s: float, queue_s: float, frame_done: bool,
               waiting: tuple[str, ...] = ()) -> None:
        """A tile of ``session`` computed; ``waiting``: the other robots that had tiles queued meanwhile (they
        spent ``service_s`` behind this robot)."""
        now = self._clock()
        with self._lock:
            for other in waiting:
                if other in self._events:
                    self._events[other].append((now - service_s, 0.0, 0.0, 0, service_s))
            ev = self._events.setdefault(session, collections.deque())
            ev.append((now - service_s, service_s, queue_s, int(frame_done), 0.0))     # when the service began
            if self._since is None:
                self._since = now - service_s
            self.last_seen[session] = now
            self._trim(ev, now)

    def seen(self, session: str) -> None:
        """The robot announced itself (no tiles yet, or all-local for now): it stays among the fleet."""
        with self._lock:
            self.last_seen[session] = self._clock()

    def forget(self, session: str) -> None:
        with self._lock:
            self._events.pop(session, None)
            self.last_seen.pop(session, None)

    def quiet_since(self, older_than_s: float) -> list[str]:
        """Robots neither served nor announced for ``older_than_s``: gone."""
        now = self._clock()
        with self._lock:
            return [s for s, t in self.last_seen.items() if now - t > older_than_s]

    def snapshot(self) -> list[RobotLoad]:
        now = self._clock()
        out = []
        with self._lock:
            # one span for every robot, and only services begun inside it: their fractions add up to at most 1
            span = max(min(self.window_s, now - (self._since if self._since is not None else now)), 0.5)
            for session, ev in self._events.items():
                self._trim(ev, now)
                if not ev:
                    out.append(RobotLoad(session, 0.0, 0.0, 0.0, 0))
                    continue
                busy = sum(e[1] for e in ev)
                frames = sum(e[3] for e in ev)
                tiles = sum(1 for e in ev if e[4] == 0)          # its own tiles (not time behind others)
                out.append(RobotLoad(session, min(busy / span, 1.0), busy * 1e3 / max(frames, 1),
                                     sum(e[2] for e in ev) * 1e3 / max(tiles, 1), frames,
                                     sum(e[4] for e in ev) * 1e3 / max(frames, 1)))
            for session in self.last_seen.keys() - self._events.keys():
                out.append(RobotLoad(session, 0.0, 0.0, 0.0, 0))
        return out

    def _trim(self, ev: collections.deque, now: float) -> None:
        while ev and now - ev[0][0] > self.window_s:
            ev.popleft()
