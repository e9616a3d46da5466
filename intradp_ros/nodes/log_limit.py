"""Rate-limited log lines for bad input: one line per cause and period, however fast the input comes.

A flood of garbage must not become a flood of log lines (a node that writes thousands of lines a second slows
down and fills the disk). The first occurrence of a cause is logged at once; later ones within ``period_s`` are
counted and summarised in one line when the period is over (by the next occurrence or by :meth:`flush`, which
the node calls from a timer). The node's counters keep every event; this only bounds the text.

Thread-safe (one lock): nodes report from their receive, work and executor threads.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

__all__ = ["LogLimiter"]


@dataclasses.dataclass
class _Cause:
    last: float                 # when a line of this cause was last written
    suppressed: int = 0         # occurrences since, not written
    latest: str = ""            # the newest of them


class LogLimiter:
    def __init__(self, log: Callable[[str], None], period_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._log, self.period_s, self._clock = log, period_s, clock
        self._lock = threading.Lock()
        self._causes: dict[str, _Cause] = {}

    def __call__(self, cause: str, line: str) -> None:
        """Report one occurrence of ``cause``; ``line`` says what happened to this one."""
        with self._lock:
            now = self._clock()
            c = self._causes.get(cause)
            if c is not None and now - c.last < self.period_s:
                c.suppressed += 1
                c.latest = line
                return
            text = line if c is None or not c.suppressed else f"{line} ({self._summary(c, now)})"
            self._causes[cause] = _Cause(now)
        self._log(text)

    def flush(self) -> None:
        """Write the summary of every cause whose period is over and that had occurrences not written."""
        lines = []
        with self._lock:
            now = self._clock()
            for cause, c in self._causes.items():
                if c.suppressed and now - c.last >= self.period_s:
                    lines.append(f"{cause}: {self._summary(c, now)}; latest: {c.latest}")
                    c.last, c.suppressed, c.latest = now, 0, ""
        for line in lines:
            self._log(line)

    @staticmethod
    def _summary(c: _Cause, now: float) -> str:
        return f"{c.suppressed} more in the last {now - c.last:.1f} s"
