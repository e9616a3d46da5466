"""Whether the edge is alive, from its heartbeats (EdgeStatus) and from frames the robot had to rescue.

Not thread-safe: robot_node calls it from its executor thread only (the heartbeat callback and the health timer).
"""
from __future__ import annotations

import enum

__all__ = ["EdgeHealth", "Health"]


class Health(enum.Enum):
    UNKNOWN = "no edge yet"
    ALIVE = "alive"
    LOST = "lost"


class EdgeHealth:
    """ALIVE while heartbeats arrive; LOST after ``timeout_s`` without one, or after ``max_rescues`` frames in a
    row that the robot computed itself because the edge's part was late (a live edge that no longer answers).

    Back to ALIVE once heartbeats are heard ``backoff_s`` after the loss. The backoff doubles (up to
    ``max_backoff_s``) each time the edge is lost by rescues while its heartbeats go on, so an edge that beats but
    does not answer costs a few rescued frames per backoff, not every frame; an answered frame resets it."""

    def __init__(self, timeout_s: float = 1.5, max_rescues: int = 3, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0):
        self.timeout_s, self.max_rescues = timeout_s, max_rescues
        self.min_backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.backoff_s = backoff_s
        self.state = Health.UNKNOWN
        self.why = ""
        self._last: float | None = None
        self._rescues = 0
        self.lost_at: float | None = None

    def heard(self, now: float) -> None:
        self._last = now

    def lease_lost(self, now: float) -> Health | None:
        """The middleware says the edge's heartbeat writer is not alive (its lease lapsed: the process or the link
        is gone). Lost at once, without waiting for the heartbeat timeout; heartbeats heard before do not count."""
        self._last = None
        if self.state is not Health.ALIVE:
            return None
        self.state, self.lost_at, self._rescues, self.why = Health.LOST, now, 0, "DDS liveliness lease lapsed"
        return self.state

    def answered(self) -> None:
        """A frame the edge took part in came back in time."""
        self._rescues = 0
        self.backoff_s = self.min_backoff_s

    def rescued(self) -> None:
        self._rescues += 1

    def check(self, now: float) -> Health | None:
        """The new state when it changed, else None."""
        silent = self._last is None or now - self._last > self.timeout_s
        if self.state is Health.ALIVE and (silent or self._rescues >= self.max_rescues):
            if silent:
                self.why = "no heartbeat for " + (f"{now - self._last:.1f} s" if self._last is not None else "ever")
            else:
                self.why = f"{self._rescues} frames in a row rescued on the robot (edge part late)"
                self.backoff_s = min(2.0 * self.backoff_s, self.max_backoff_s)
            self.state, self.lost_at, self._rescues = Health.LOST, now, 0
            return self.state
        if self.state is Health.UNKNOWN and not silent:
            self.state, self.why = Health.ALIVE, "heartbeats"
            return self.state
        if self.state is Health.LOST and not silent and now - self.lost_at >= self.backoff_s:
            self.state, self.why = Health.ALIVE, f"heartbeats again after {now - self.lost_at:.1f} s"
            return self.state
        return None
