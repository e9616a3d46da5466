"""Supervision of the launched nodes: :class:`Launch` holds the child processes and their output.

Each child's output lines are kept (and printed, prefixed with ``[<node name>]``, with ``echo``); a child exiting
non-zero stops the others and :meth:`Launch.poll` returns its status; a child exiting 0 (camera_player with
``exit_when_done``) is fine, and the launch ends with 0 once all did. :meth:`Launch.stop` sends SIGINT, then
SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import collections
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

from intradp_ros.launching.arguments import LaunchError
from intradp_ros.topology import NodeSpec

__all__ = ["Launch", "child_setup", "emit"]


def child_setup() -> None:
    """In the child, before exec (Linux; elsewhere a no-op).

    SIGINT/SIGTERM back to their defaults (a launcher started as a background job of a script inherits
    SIGINT ignored, and the nodes would then ignore the forwarded Ctrl-C); SIGTERM when the thread that
    started the child ends (PR_SET_PDEATHSIG), so nodes do not outlive a launcher killed with SIGKILL.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            libc.signal(int(sig), 0)                  # SIG_DFL
        libc.prctl(1, int(signal.SIGTERM))            # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: children may outlive a killed launcher
        pass


_EMIT_LOCK = threading.Lock()


def emit(stream, line: str) -> None:
    """Write one whole line: ``print`` writes text and newline separately, so lines from two reader threads
    could interleave ("[a] x[b] y")."""
    with _EMIT_LOCK:
        stream.write(line + "\n")
        stream.flush()


class Launch:
    """The running nodes of one launch. Use :func:`intradp_ros.launcher.start` to create one.

    Attributes:
        processes: node name -> ``subprocess.Popen``.
        output: node name -> its output lines (stdout and stderr, newest last, at most ``max_lines``).
        lines: every output line, prefixed with ``[<node name>]``, in arrival order.
        commands: node name -> command line.
    """

    def __init__(self, host: str, commands: list[tuple[NodeSpec, list[str]]], env: dict[str, str],
                 echo: bool = False, log_dir: str | os.PathLike | None = None, max_lines: int = 10000):
        self.host = host
        self.commands = {spec.name: argv for spec, argv in commands}
        self.processes: dict[str, subprocess.Popen] = {}
        self.output: dict[str, collections.deque] = {}
        self.lines: collections.deque = collections.deque(maxlen=max_lines)
        self._echo = echo
        self._changed = threading.Condition()
        self._readers = []
        self._stopping = False
        log_dir = pathlib.Path(log_dir) if log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec, argv in commands:
                self.output[spec.name] = collections.deque(maxlen=max_lines)
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=child_setup)
                self.processes[spec.name] = proc
                log = open(log_dir / f"{spec.name}.log", "w", encoding="utf-8") if log_dir else None  # noqa: SIM115
                reader = threading.Thread(target=self._read, args=(spec.name, proc, log), daemon=True,
                                          name=f"output of {spec.name}")
                reader.start()
                self._readers.append(reader)
        except OSError as e:
            self.stop()
            raise LaunchError(f"cannot start {argv[0]}: {e}") from e

    def _read(self, name: str, proc: subprocess.Popen, log) -> None:
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._changed:
                    self.output[name].append(line)
                    self.lines.append(f"[{name}] {line}")
                    self._changed.notify_all()
                if log:
                    log.write(line + "\n")
                    log.flush()
                if self._echo:
                    emit(sys.stdout, f"[{name}] {line}")
        finally:
            proc.stdout.close()
            if log:
                log.close()
            proc.wait()
            with self._changed:
                self._changed.notify_all()

    # ------------------------------------------------------------------ queries
    def returncodes(self) -> dict[str, int | None]:
        """Node name -> exit status (None while running; negative: killed by that signal)."""
        return {name: proc.poll() for name, proc in self.processes.items()}

    def wait_for_output(self, pattern: str, node: str | None = None, timeout: float = 30.0) -> str:
        """Block until a line of ``node`` (any node if None) matches the regex ``pattern``; return the line.

        Raises:
            TimeoutError: no match within ``timeout`` s, or every process ended without one.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                sources = [self.output[node]] if node else list(self.output.values())
                for lines in sources:
                    for line in lines:
                        if regex.search(line):
                            return line
                names = [node] if node else list(self.processes)
                ended = all(self.processes[n].poll() is not None for n in names) and not any(
                    r.is_alive() for r in self._readers)
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "exited" if ended else f"did not print it within {timeout} s"
                    raise TimeoutError(f"no line matching {pattern!r} from {node or 'any node'}: {why}; last lines:\n"
                                       + "\n".join(list(self.lines)[-20:]))
                self._changed.wait(min(left, 0.5))

    def poll(self) -> int | None:
        """Supervise once: None while the launch goes on, else its exit status (see the module docstring).

        A child that exited non-zero stops the others first.
        """
        codes = self.returncodes()
        failed = {n: c for n, c in codes.items() if c not in (None, 0)}
        if failed and not self._stopping:
            name, code = next(iter(failed.items()))
            self.announce(f"{name} exited with status {code}: stopping the other nodes")
            self.stop()
            return code if code > 0 else 128 - code
        if all(c is not None for c in codes.values()):
            return 0 if not failed or self._stopping else 1
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        """Supervise until the launch ends (see :meth:`poll`); None if ``timeout`` s passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.poll()
            if status is not None:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            with self._changed:
                self._changed.wait(0.2)   # woken when a child's output ends; the timeout bounds the poll

    # ------------------------------------------------------------------ stopping
    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to every child still running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGINT every child, then SIGTERM after ``timeout`` s, then SIGKILL; return the exit statuses."""
        self._stopping = True
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            self.send_signal(sig)
            deadline = time.monotonic() + (timeout if sig != signal.SIGKILL else 5.0)
            for proc in self.processes.values():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in self.processes.values()):
                break
            self.announce(f"nodes still running {timeout:.0f} s after {signal.Signals(sig).name}: "
                           f"sending the next signal")
        for reader in self._readers:
            reader.join(timeout=5.0)
        return self.returncodes()

    def announce(self, text: str) -> None:
        """A line of the launcher's own: kept in :attr:`lines` and written to stderr, prefixed ``[launcher]``."""
        with self._changed:
            self.lines.append(f"[launcher] {text}")
        emit(sys.stderr, f"[launcher] {text}")

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
