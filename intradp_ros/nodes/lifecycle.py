"""ManagedNode: the lifecycle the nodes that hold a model share (robot_node, edge_node).

configure loads what the node holds (the model, its profile, threads, topics); activate serves; deactivate
stops serving (no frames or tiles taken); cleanup releases everything configure made, the model and its memory
included, so that `ros2 lifecycle set /edge_node cleanup` gives a GPU back without killing the process.

A subclass declares its parameters in ``__init__`` (so that `ros2 param` sees them in every state) and
implements :meth:`configure`, :meth:`activate`, :meth:`deactivate` and :meth:`release`. Publishers,
subscriptions and timers it creates in :meth:`configure` are destroyed on cleanup without its help.
With the ``autostart`` parameter (default true; the launch files' ``autostart`` argument) the node brings itself
to active at start-up, and a configure that fails ends the process with one ERROR line and status 1.

Transitions run on the executor's thread (the lifecycle services) or, for autostart, on the main thread before
spinning: never two at once.
"""
from __future__ import annotations

import ctypes
import gc

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from intradp_ros.nodes.common import NotStarted, declare, failure_line

__all__ = ["ManagedNode"]


class ManagedNode(LifecycleNode):

    def __init__(self, name: str):
        super().__init__(name)
        self.autostart = declare(self, "autostart", True, "configure and activate at start-up (false: wait for "
                                 "`ros2 lifecycle set`)", True)
        self.configured = False
        self.active = False
        self._made: tuple[list, list, list] = ([], [], [])

    # -- what a subclass implements ------------------------------------------------------------------------------
    def configure(self) -> None:
        """Load and create what the node holds; raise to fail (the message says what to do)."""

    def activate(self) -> None:
        """Start serving."""

    def deactivate(self) -> None:
        """Stop serving (keep what configure made)."""

    def release(self) -> None:
        """Stop the threads configure started and drop what it loaded (entities are destroyed afterwards)."""

    # -- the transitions -----------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entities()
        try:
            self.configure()
        except Exception as e:  # noqa: BLE001 - a configure that fails says why in one line, then stays unconfigured
            self.get_logger().error(f"cannot start: {failure_line(e)}")
            self._made = self._new_since(before)
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._made = self._new_since(before)
        self.configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def start(self) -> None:
        """Autostart: configure, then activate; NotStarted when either fails."""
        if not self.autostart:
            self.get_logger().info("autostart is false: waiting for `ros2 lifecycle set` (configure, activate)")
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise NotStarted()
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise NotStarted()

    def close(self) -> None:
        """At exit (run_node): release what is held, whatever the state."""
        if self.active:
            self.active = False
            self.deactivate()
        self._release()

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def _release(self) -> None:
        self.configured = False
        self.release()
        pubs, subs, timers = self._made
        self._made = ([], [], [])
        for t in timers:
            self.destroy_timer(t)
        for s in subs:
            self.destroy_subscription(s)
        for p in pubs:
            self.destroy_publisher(p)
        gc.collect()              # the model's tensors go now, not at some later collection
        _trim_heap()

    def _entities(self) -> tuple[set, set, set]:
        return set(self.publishers), set(self.subscriptions), set(self.timers)

    def _new_since(self, before: tuple[set, set, set]) -> tuple[list, list, list]:
        now = self._entities()
        return tuple([e for e in n if e not in b] for n, b in zip(now, before))


def _trim_heap() -> None:
    """Give freed heap pages back to the system (glibc keeps them for reuse otherwise: RSS would not drop)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
