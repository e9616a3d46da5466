"""What every intradp_ros node shares: topics with their QoS, counters on /diagnostics, tile conversion, main()."""
from __future__ import annotations

import ctypes
import signal
import threading
import traceback
import zlib
from typing import Callable

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions, _declare_qos_parameters
from rclpy.subscription import Subscription

from intradp_ros.engine.packet import Packet
from intradp_ros.engine.plan import Plan, PlanError
from intradp_ros.msg import TensorTile
from intradp_ros.nodes.cdr import tile_session  # noqa: F401 - part of this module's interface
from intradp_ros.topology import QOS, TOPICS

__all__ = ["declare", "QOS_OVERRIDES", "topic_qos", "publisher", "subscription", "subscription_qos", "Counters",
           "packet_to_msg", "msg_to_packet", "tile_session", "name_native_thread", "make_executor", "StartupError",
           "NotStarted", "failure_line", "run_node",
           "shutting_down", "stamp_ms"]


def declare(node: Node, name: str, default, description: str, read_only: bool = False,
            limits: tuple[float, float] | None = None):
    """Declare a parameter with a description (and ``limits``, an inclusive range rcl enforces and
    ``ros2 param describe`` shows) and return its value."""
    d = ParameterDescriptor(description=description, read_only=read_only)
    if limits is not None and isinstance(default, bool):
        raise TypeError(f"{name}: a boolean has no range")
    if limits is not None and isinstance(default, int):
        d.integer_range = [IntegerRange(from_value=int(limits[0]), to_value=int(limits[1]), step=1)]
    elif limits is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(limits[0]), to_value=float(limits[1]),
                                                     step=0.0)]
    if not node.has_parameter(name):             # declared already: a lifecycle node configured again
        node.declare_parameter(name, default, d)
    return node.get_parameter(name).value


# The policies a deployment may override per topic and per publisher / subscription, the standard way:
# ``qos_overrides./<resolved topic>.<publisher|subscription>.<policy>`` parameters (config/qos.yaml), read-only,
# read once when the entity is created.
QOS_OVERRIDES = QoSOverridingOptions(policy_kinds=(
    QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY,
    QoSPolicyKind.LIVELINESS, QoSPolicyKind.LIVELINESS_LEASE_DURATION))


def topic_qos(key: str) -> QoSProfile:
    """The default QoS of topic ``key`` (topology.QOS); the nodes' entities apply the overrides on top."""
    d = QOS[TOPICS[key].qos]
    liveliness = {} if not d.lease_s > 0 else {
        "liveliness": LivelinessPolicy.AUTOMATIC, "liveliness_lease_duration": Duration(seconds=d.lease_s)}
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=d.depth,
                      reliability=ReliabilityPolicy[d.reliability.upper()],
                      durability=DurabilityPolicy[d.durability.upper()], **liveliness)


def publisher(node: Node, msg_type, key: str, topic: str | None = None):
    """A publisher on topic ``key`` (or on ``topic``, with ``key``'s QoS) with its QoS: the defaults, then the
    node's ``qos_overrides.`` parameters."""
    return node.create_publisher(msg_type, topic or TOPICS[key].name, topic_qos(key),
                                 qos_overriding_options=QOS_OVERRIDES)


def subscription(node: Node, msg_type, key: str, callback, **kwargs):
    """A subscription on topic ``key``, its QoS as :func:`publisher`'s."""
    return node.create_subscription(msg_type, TOPICS[key].name, callback, topic_qos(key),
                                    qos_overriding_options=QOS_OVERRIDES, **kwargs)


def subscription_qos(node: Node, key: str, topic: str | None = None) -> QoSProfile:
    """The QoS a subscription of ``node`` on topic ``key`` (or on ``topic``, with ``key``'s QoS) gets (the overrides
    declared on ``node``), for one that lives on a helper node (nodes.receiver): the parameters stay where users
    look for them."""
    qos = topic_qos(key)
    _declare_qos_parameters(Subscription, node, node.resolve_topic_name(topic or TOPICS[key].name), qos,
                            QOS_OVERRIDES)
    return qos


class Counters:
    """Named event counters, published on /diagnostics once a second (and readable in tests)."""

    def __init__(self, node: Node, names: list[str], also: Callable[[], None] | None = None):
        """``also``: called on the same 1 Hz timer before publishing (one executor wake-up for both)."""
        self._node, self._also = node, also
        self._lock = threading.Lock()
        self.values = dict.fromkeys(names, 0)
        self.level, self.message = DiagnosticStatus.OK, "counters"   # set_status() changes them
        self._pub = publisher(node, DiagnosticArray, "diagnostics")
        self._timer = node.create_timer(1.0, self.publish)

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + n

    def set_status(self, level: bytes, message: str) -> None:
        """The node's health on /diagnostics (DiagnosticStatus.OK / WARN / ERROR and why), published at once."""
        with self._lock:
            self.level, self.message = level, message
        self.publish()

    def publish(self) -> None:
        if self._also is not None:
            self._also()
        with self._lock:
            values, level, message = dict(self.values), self.level, self.message
        st = DiagnosticStatus(level=level, name=self._node.get_fully_qualified_name(),
                              message=message, hardware_id="intradp_ros",
                              values=[KeyValue(key=k, value=str(v)) for k, v in sorted(values.items())])
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)


def name_native_thread() -> None:
    """Give the calling thread's Python name to the OS thread (15 bytes: Linux's limit), so that ``top -H``,
    /proc/<pid>/task/*/comm and ``./intradp thread-cpu`` tell the nodes' threads apart (Python 3.11 leaves them
    all named after the process)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, threading.current_thread().name.encode()[:15], 0, 0, 0)     # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def stamp_ms(t: Time) -> float:
    return t.sec * 1e3 + t.nanosec / 1e6


def packet_to_msg(p: Packet, header, image_size: tuple[int, int], model: str, now: Time,
                  session: str | None = None) -> TensorTile:
    """``session``: the sender's session (robot_node's), else the packet's own (the edge answers in its robot's)."""
    m = TensorTile()
    m.header = header
    m.session = p.session if session is None else session
    m.frame_seq = p.frame_seq
    m.plan_spec = p.plan_spec
    m.plan_id = zlib.crc32(p.plan_spec.encode())     # == Plan.plan_id of the (canonical) plan text
    m.model = model
    m.tensor = p.tensor
    m.stage, m.tile_index, m.tile_count = p.stage, p.tile_index, p.tile_count
    m.sender = p.sender
    m.row_start, m.row_stop = p.row_start, p.row_stop
    m.halo_top, m.halo_bottom = p.halo_top, p.halo_bottom
    m.shape = [int(s) for s in p.shape]
    m.payload_shape = [int(s) for s in p.payload_shape]
    m.dtype, m.encoding = p.dtype, p.encoding
    m.image_width, m.image_height = int(image_size[0]), int(image_size[1])
    m.sent = now
    m.compute_ms = float(p.compute_ms)
    m.robot_compute_ms, m.robot_to_edge_bytes = float(p.robot_ms), int(p.robot_bytes)
    m.data = p.payload          # bytes: fast path (a numpy array here would be copied element by element)
    return m


def msg_to_packet(m: TensorTile, dest: str) -> Packet:
    """The engine's view of a tile message (payload validated later, when decoded)."""
    if m.plan_id != Plan.parse(m.plan_spec).plan_id:
        raise PlanError(f"plan id {m.plan_id} does not match plan text {m.plan_spec!r}")
    return Packet(m.frame_seq, m.plan_spec, m.tensor, m.stage, m.tile_index, m.tile_count, m.sender, dest,
                  m.row_start, m.row_stop, tuple(m.shape), tuple(m.payload_shape), m.dtype, m.encoding,
                  m.data.tobytes() if hasattr(m.data, "tobytes") else bytes(m.data), m.halo_top, m.halo_bottom,
                  m.compute_ms, m.session, m.robot_compute_ms, m.robot_to_edge_bytes)


EXECUTORS = ("single", "multi")


def make_executor(node: Node):
    """The executor named by the node's ``executor`` parameter.

    ``single`` (default) is rclpy's SingleThreadedExecutor: our callbacks only hand work to the nodes' own threads,
    so one thread serves them all, and rclpy's MultiThreadedExecutor costs several ms of CPU per frame in Python
    (wait-set rebuilds, a thread pool), which on a CPU-capped robot delays every message behind the cap: measured
    in `./intradp bench`, 0.25 core, YOLOv3-tiny at 50 Mbit/s, it made frames 20-50 ms slower. ``multi`` is the
    MultiThreadedExecutor.
    """
    kind = declare(node, "executor", "single", f"rclpy executor: {' | '.join(EXECUTORS)}", True)
    if kind not in EXECUTORS:
        node.get_logger().error(f"executor {kind!r} is not one of {', '.join(EXECUTORS)}: using single")
        kind = "single"
    if kind == "multi":
        return MultiThreadedExecutor(context=node.context)
    return SingleThreadedExecutor(context=node.context)


class StartupError(Exception):
    """A node cannot start; the message says what to do (logged as one ERROR line, the process exits 1)."""


class NotStarted(StartupError):
    """A node's start() failed and logged why already (see nodes.lifecycle)."""


def failure_line(e: BaseException) -> str:
    """A start-up failure in one line: our errors say what to do as they are; anything else gets its type."""
    return str(e) if isinstance(e, (StartupError, ValueError, PlanError, FileNotFoundError)) else (
        f"{type(e).__name__}: {e}")


def run_node(factory: Callable[[], Node], args=None, name: str = "") -> int:
    """main() of every node: build it, ``start()`` it where it has one (lifecycle autostart), spin on its executor
    (see :func:`make_executor`) until Ctrl-C or shutdown.

    Returns the exit status: 0, or 1 when the node could not start. A start-up failure is one ERROR line saying
    what to do, never a traceback (that is logged at DEBUG, for ``--log-level debug``), so that `ros2 launch` and
    the launcher report the node as failed. Errors in the nodes' own threads after Ctrl-C (the context goes
    before they are joined) are theirs to swallow: see :func:`shutting_down`.
    """
    rclpy.init(args=args)
    node = None
    status = 0
    phase = "cannot start"
    try:
        node = factory()
        executor = make_executor(node)
        start = getattr(node, "start", None)
        if start is not None:
            start()
        executor.add_node(node)
        phase = "stopped by an error"
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except NotStarted:
        status = 1
    except Exception as e:  # noqa: BLE001 - every start-up failure becomes one line and a status
        status = 1
        log = rclpy.logging.get_logger(name or "intradp_ros")
        log.error(f"{phase}: {failure_line(e)}")
        (log.debug if phase == "cannot start" else log.error)(traceback.format_exc())   # a crash is a bug: show it
    finally:
        # launch forwards Ctrl-C to each node as a second SIGINT: it must not interrupt the teardown (its SIGTERM
        # and SIGKILL still end a node that hangs)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "close", None)
            try:
                if close:
                    close()
            except KeyboardInterrupt:       # a second Ctrl-C while the worker threads finish
                pass
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


def shutting_down(node: Node) -> bool:
    """The node's context is gone (Ctrl-C): a worker thread's failed publish is then the end, not an error."""
    return not node.context.ok()
