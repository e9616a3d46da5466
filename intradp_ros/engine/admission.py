"""Which received packets a node takes: the right session, not a duplicate or replay, not stale.

A frame is named by its robot's session (a random id robot_node makes when it starts) and its sequence number.
Reliable DDS delivery keeps what a link outage queued and hands it over seconds late on reconnect; a restarted
robot starts counting from 1 again; anyone on the domain can publish old messages again. :class:`Admission` turns
each of these into a named cause that the node counts and logs (rate-limited), before any payload is decoded.

Ages are measured without trusting the two machines' clocks to agree: for each (session, sender) the smallest
``arrival - sent`` seen recently is the clocks' offset plus the link's fastest transit, and a packet that took
``max_age_s`` longer than that is stale (the offset cancels; only clock drift over the window remains).

Not thread-safe: each node calls it from its one receiving thread.
"""
from __future__ import annotations

import collections
import enum

__all__ = ["Admission", "Refusal"]


class Refusal(enum.Enum):
    """Why a packet was not taken (the value is the node's counter name)."""
    FOREIGN = "foreign_session"       # another robot's (or an earlier run's) session
    DUPLICATE = "duplicates"          # a frame already finished, within the remembered window
    REPLAY = "replays"                # older than every frame remembered of its session
    STALE = "stale_packets"           # took max_age_s longer than the fastest packet of its sender


class _Session:
    def __init__(self, window: int):
        self.finished: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.window = window
        self.floor = -1                    # the newest frame forgotten: anything at or below it is a replay
        self.delays: dict[str, collections.deque] = {}


class Admission:
    WINDOW = 1024          # finished frames remembered per session
    DELAY_SAMPLES = 512    # packets whose fastest transit sets a sender's reference
    MAX_SESSIONS = 64      # sessions tracked at once (least recently seen forgotten first)

    def __init__(self, max_age_s: float, expected: str | None = None):
        self.max_age_s = max_age_s
        self.expected = expected           # the one session to accept (the aggregator's robot), or None: any
        self._sessions: collections.OrderedDict[str, _Session] = collections.OrderedDict()

    def expect(self, session: str) -> None:
        """Accept only ``session`` from now on (a robot that restarted made a new one)."""
        self.expected = session

    def check(self, session: str, seq: int, sender: str, sent_s: float, arrived_s: float) -> Refusal | None:
        """None if the packet may be used, else why not. ``sent_s`` is the sender's clock, ``arrived_s`` ours."""
        if self.expected is not None and session != self.expected:
            return Refusal.FOREIGN
        s = self._session(session)
        if seq in s.finished:
            return Refusal.DUPLICATE
        if seq <= s.floor:
            return Refusal.REPLAY
        delays = s.delays.setdefault(sender, collections.deque(maxlen=self.DELAY_SAMPLES))
        delay = arrived_s - sent_s
        delays.append(delay)
        if self.max_age_s > 0 and delay - min(delays) > self.max_age_s:
            return Refusal.STALE
        return None

    def finish(self, session: str, seq: int) -> None:
        """Frame ``seq`` of ``session`` is done (published, or dropped): later packets of it are duplicates."""
        s = self._session(session)
        s.finished[seq] = None
        s.finished.move_to_end(seq)
        while len(s.finished) > s.window:
            s.floor = max(s.floor, s.finished.popitem(last=False)[0])

    def is_finished(self, session: str, seq: int) -> bool:
        s = self._sessions.get(session)
        return s is not None and seq in s.finished

    def _session(self, session: str) -> _Session:
        s = self._sessions.get(session)
        if s is None:
            s = self._sessions[session] = _Session(self.WINDOW)
            while len(self._sessions) > self.MAX_SESSIONS:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session)
        return s
