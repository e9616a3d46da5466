"""The real nodes, each its own process, over DDS on a private ROS_DOMAIN_ID; this test is the user.

It publishes camera frames and subscribes to /intradp/detections: every frame yields exactly one detection
array stamped like the frame, equal to single-process inference, under Intra-DP plans switched at run time.
Bad input (images, tiles, outputs) is logged and counted on /diagnostics, and the next good frame still works.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from intradp_ros.engine.executor import RobotWorker  # noqa: E402
from intradp_ros.engine.plan import Plan  # noqa: E402
from intradp_ros.engine.rows import Segment  # noqa: E402
from intradp_ros.engine.search import split_points  # noqa: E402
from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.msg import DetectionArray, PlanStatus, TensorTile  # noqa: E402
from intradp_ros.nodes.common import packet_to_msg, topic_qos  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.topology import TOPICS  # noqa: E402
from intradp_ros.vision.image_convert import array_to_image_fields  # noqa: E402
from intradp_ros.vision.samples import load_sample  # noqa: E402
from ros_helpers import print_outputs, robot_listening, spin_until  # noqa: E402

WAIT = 90.0


def _params(tmp_path, name, updates):
    return str(with_overrides(share_dir() / "config" / name, updates, tmp_path))


class Client(Node):
    """What a user's node does: publish frames, read detections and diagnostics."""

    def __init__(self):
        super().__init__("intradp_test_client")
        self.detections: list[DetectionArray] = []
        self.annotated: list[Image] = []
        self.counters: dict[str, dict[str, int]] = {}
        self.camera = self.create_publisher(Image, TOPICS["camera"].name, topic_qos("camera"))
        self.tiles = self.create_publisher(TensorTile, TOPICS["to_edge"].name, topic_qos("to_edge"))
        out_qos = topic_qos("outputs")
        self.outputs = self.create_publisher(TensorTile, TOPICS["outputs"].name, out_qos)
        self.create_subscription(DetectionArray, TOPICS["detections"].name, self.detections.append,
                                 topic_qos("detections"))
        self.create_subscription(DiagnosticArray, TOPICS["diagnostics"].name, self._diag, 10)
        self.create_subscription(Image, TOPICS["annotated"].name, self.annotated.append, topic_qos("annotated"))
        self.seen_outputs: list[TensorTile] = []        # what robot and edge sent the aggregator
        self.create_subscription(TensorTile, TOPICS["outputs"].name, self.seen_outputs.append, out_qos)
        self.session = self.plan_spec = ""              # the robot's, from its PlanStatus
        self.create_subscription(PlanStatus, TOPICS["plan"].name, self._plan, topic_qos("plan"))

    def _plan(self, m: PlanStatus):
        self.session, self.plan_spec = m.session, m.plan_spec

    def _diag(self, msg):
        for st in msg.status:
            self.counters[st.name.lstrip("/")] = {kv.key: int(kv.value) for kv in st.values}

    def spin_until(self, cond, what: str, timeout: float = WAIT):
        spin_until(self, cond, what, timeout)

    def publish_now(self, publisher, msg: TensorTile) -> None:
        """Stamped as sent now: a tile built slower than max_tile_age_s ago would be refused as stale."""
        msg.sent = self.get_clock().now().to_msg()
        publisher.publish(msg)

    def counter(self, node: str, name: str) -> int:
        return self.counters.get(node, {}).get(name, 0)

    def send_image(self, bgr: np.ndarray, as_encoding: str = "bgr8", **override) -> Image:
        msg = Image(**array_to_image_fields(bgr, as_encoding))
        for k, v in override.items():
            setattr(msg, k, v)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "test_camera"
        self.camera.publish(msg)
        return msg

    def detect(self, bgr: np.ndarray) -> DetectionArray:
        sent = self.send_image(bgr)
        n = len(self.detections)
        self.spin_until(lambda: len(self.detections) > n, "detections")
        got = self.detections[n]
        assert got.header.stamp == sent.header.stamp and got.header.frame_id == "test_camera"
        return got


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if load_sample("dog.jpg") is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    tmp = tmp_path_factory.mktemp("ros")
    model = ModelRuntime(ModelConfig())
    g = model.graph
    starts, ends = split_points(g)
    mid = starts[len(starts) // 2]
    n = len(g.ops)
    plans = [Plan("yolov3_tiny", 416, 416, 0, n, Segment(g, 0, n).grid // 2, 3, 4),       # split all the way
             Plan("yolov3_tiny", 416, 416, mid, ends[mid][0], 1, 2, 2, "lz4"),   # prefix + split + suffix
             Plan.offload(g, "yolov3_tiny")]
    domain = str(100 + os.getpid() % 100)
    os.environ["ROS_DOMAIN_ID"] = domain
    robot = _params(tmp, "robot.yaml", {"robot_node": {"plan": plans[0].spec(), "profile_cache_dir": str(tmp)},
                                        "aggregator_node": {"frame_timeout_s": 4.0, "publish_annotated": True}})
    edge = _params(tmp, "edge.yaml", {"edge_node": {"frame_timeout_s": 4.0, "profile_cache_dir": str(tmp)}})
    launch = start("all", {"start_camera": "false", "robot_params_file": robot, "edge_params_file": edge},
                   env=dict(os.environ, ROS_DOMAIN_ID=domain))
    rclpy.init()
    client = Client()
    try:
        # (the aggregator subscribes to the camera too, for annotated images: wait for the robot's, matched)
        client.spin_until(lambda: robot_listening(client, client.camera, TOPICS["camera"].name)
                          or launch.poll() not in (None, 0), "robot_node to become ready")
        assert launch.poll() in (None, 0), launch.output
        yield client, model, plans, launch
    finally:
        client.destroy_node()
        rclpy.shutdown()
        launch.stop()
        print_outputs({"": launch})


def _same(got: DetectionArray, ref) -> None:
    assert [d.class_name for d in got.detections] == [d.class_name for d in ref]
    for a, b in zip(got.detections, ref):
        assert abs(a.score - b.score) <= 1e-4
        assert max(abs(a.center_x - b.center_x), abs(a.center_y - b.center_y), abs(a.size_x - b.size_x),
                   abs(a.size_y - b.size_y)) <= 1e-2


def test_frames_yield_detections_equal_to_one_process(world):
    client, model, plans, _ = world
    for name in ("dog.jpg", "person.jpg", "horses.jpg"):
        bgr = load_sample(name)
        got = client.detect(bgr)
        assert got.plan_spec == plans[0].spec()
        _same(got, model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    # the edge timed the input chunks of those frames and the robot received the link estimates
    client.spin_until(lambda: client.counter("robot_node", "link_samples") >= 1, "link estimates at the robot")
    # each node reports its counters on its own diagnostics period: wait for the edge's report, too
    client.spin_until(lambda: client.counter("edge_node", "link_samples") >= 1, "the edge's link samples")


def test_annotated_image_shows_the_boxes(world):
    client, _, _, _ = world
    bgr = load_sample("dog.jpg")
    got = client.detect(bgr)
    client.spin_until(lambda: any(m.header.stamp == got.header.stamp for m in client.annotated), "annotated image")
    img = next(m for m in client.annotated if m.header.stamp == got.header.stamp)
    assert (img.width, img.height, img.encoding) == (bgr.shape[1], bgr.shape[0], "bgr8")
    drawn = np.frombuffer(bytes(img.data), np.uint8).reshape(bgr.shape)
    changed = np.any(drawn != bgr, axis=2)
    d = max(got.detections, key=lambda d: d.score)
    x0, y0 = int(d.center_x - d.size_x / 2), int(d.center_y - d.size_y / 2)
    assert changed.mean() < 0.5                                     # boxes and labels, not a different image
    assert changed[max(y0, 0):y0 + 3, max(x0, 0):x0 + int(d.size_x)].any()   # the best box's top edge is drawn


def test_plan_changes_at_run_time_lose_no_frame(world):
    client, model, plans, _ = world
    params = AsyncParameterClient(client, "robot_node")
    assert params.wait_for_services(timeout_sec=30)
    bgr = load_sample("dog.jpg")
    ref = model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    for plan in plans[1:] + plans[:1]:
        fut = params.set_parameters([Parameter("plan", value=plan.spec())])
        client.spin_until(fut.done, "set_parameters")
        assert fut.result().results[0].successful
        # the new plan runs from the first frame after it is priced: PlanStatus says when
        spec = plan.spec()
        client.spin_until(lambda s=spec: client.plan_spec == s, "PlanStatus naming the new plan")
        got = client.detect(bgr)
        assert got.plan_spec == plan.spec()
        _same(got, ref)
    fut = params.set_parameters([Parameter("plan", value="yolov3_tiny@416x416|0|999|0|1x1|raw")])
    client.spin_until(fut.done, "set_parameters")
    assert not fut.result().results[0].successful        # refused, and the node keeps the plan it had
    assert client.detect(bgr).plan_spec == plans[0].spec()


def test_bad_images_are_logged_counted_and_survived(world):
    client, model, _, launch = world
    bgr = load_sample("dog.jpg")
    bad = [dict(image=bgr[:, :, 0].copy(), as_encoding="mono8", encoding="yuv422"),     # unsupported encoding
           dict(image=bgr[:2, :2], height=0, width=0, step=0, data=b""),              # zero-size
           dict(image=bgr, data=bytes(100))]                                          # shorter than step*height
    for kw in bad:   # one at a time: the camera topic keeps only the newest frame (sensor-data QoS)
        before = client.counter("robot_node", "bad_images")
        client.send_image(kw.pop("image"), **kw)
        client.spin_until(lambda n=before: client.counter("robot_node", "bad_images") > n, "bad_images counter")
    assert launch.poll() is None
    launch.wait_for_output(r"refused", node="robot_node", timeout=10)
    _same(client.detect(bgr), model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def _valid_tiles(model, plan, seq):
    """Real packets of one frame under ``plan``, as the robot would send them."""
    packets = []
    x = model.preprocess(cv2.cvtColor(load_sample("dog.jpg"), cv2.COLOR_BGR2RGB))[0]
    RobotWorker(model.graph, model.task.output_fn).run_frame(seq, plan, x, packets.append)
    return [p for p in packets if p.dest == "edge"]


def test_bad_tiles_are_logged_counted_and_survived(world):
    client, model, plans, launch = world
    client.spin_until(lambda: client.session, "the robot's session")   # the edge takes announced sessions only
    header = Image().header
    now = client.get_clock().now().to_msg()

    def tile(seq):
        return packet_to_msg(_valid_tiles(model, plans[0], seq)[0], header, (768, 576), "yolov3_tiny", now,
                             client.session)
    good = tile(10 ** 9)
    bad = []
    m = tile(10 ** 9 + 1)
    m.data = bytes(m.data)[:-7]                                   # payload disagrees with shape x dtype
    bad.append(m)
    m = tile(10 ** 9 + 2)
    m.payload_shape = [1, 3, 10 ** 6, 10 ** 6]                     # 3e12 elements
    bad.append(m)
    m = tile(10 ** 9 + 3)
    m.plan_spec, m.plan_id = "no-such-plan", 12345                 # unknown plan id
    bad.append(m)
    m = tile(10 ** 9 + 4)
    m.plan_spec = m.plan_spec.replace("yolov3_tiny", "resnet18")   # a plan for another model
    m.plan_id = Plan.parse(m.plan_spec).plan_id
    bad.append(m)
    before = client.counter("edge_node", "bad_tiles")
    for m in bad:
        client.publish_now(client.tiles, m)
    client.spin_until(lambda: client.counter("edge_node", "bad_tiles") >= before + len(bad), "bad_tiles counter")
    # a frame whose other tiles never come is dropped after frame_timeout_s, not kept
    dropped = client.counter("edge_node", "frames_dropped_timeout")
    client.publish_now(client.tiles, good)
    client.spin_until(lambda: client.counter("edge_node", "frames_dropped_timeout") > dropped, "timeout drop")
    assert launch.poll() is None
    launch.wait_for_output(r"rejected, frame dropped", node="edge_node", timeout=10)
    bgr = load_sample("person.jpg")
    _same(client.detect(bgr), model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def test_bad_outputs_are_logged_counted_and_survived(world):
    client, model, plans, launch = world
    header = Image().header
    now = client.get_clock().now().to_msg()
    packets = []
    x = model.preprocess(cv2.cvtColor(load_sample("dog.jpg"), cv2.COLOR_BGR2RGB))[0]
    RobotWorker(model.graph, model.task.output_fn).run_frame(10 ** 9 + 10, Plan.local(model.graph, "yolov3_tiny"),
                                                             x, packets.append)
    client.spin_until(lambda: client.session, "the robot's session")
    m = packet_to_msg(packets[0], header, (768, 576), "yolov3_tiny", now, client.session)
    m.tensor = "not_an_output"
    before = client.counter("aggregator_node", "bad_outputs")
    client.publish_now(client.outputs, m)
    partial = packet_to_msg(packets[0], header, (768, 576), "yolov3_tiny", now, client.session)  # 1 of 2 outputs
    dropped = client.counter("aggregator_node", "frames_dropped_timeout")
    client.publish_now(client.outputs, partial)
    client.spin_until(lambda: client.counter("aggregator_node", "bad_outputs") > before, "bad_outputs counter")
    client.spin_until(lambda: client.counter("aggregator_node", "frames_dropped_timeout") > dropped, "timeout drop")
    assert launch.poll() is None
    bgr = load_sample("dog.jpg")
    _same(client.detect(bgr), model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_a_decompression_bomb_is_refused_before_it_is_decoded(world):
    """1.1 MB of lz4 that expands to 256 MiB, as a tile to the edge and as an output to the aggregator: each node
    decompresses no more than the declared shape needs, refuses it, and its peak memory grows by under 10 MB."""
    import lz4.frame
    client, model, plans, launch = world
    client.spin_until(lambda: client.session, "the robot's session")
    bomb = lz4.frame.compress(bytes(256 << 20), compression_level=0)
    header, now = Image().header, client.get_clock().now().to_msg()
    tile = packet_to_msg(_valid_tiles(model, plans[1], 10 ** 9 + 20)[0], header, (768, 576), "yolov3_tiny", now,
                         client.session)
    tile.encoding, tile.dtype, tile.data = "lz4", "float32", bomb
    out_pkts = []
    x = model.preprocess(cv2.cvtColor(load_sample("dog.jpg"), cv2.COLOR_BGR2RGB))[0]
    RobotWorker(model.graph, model.task.output_fn).run_frame(10 ** 9 + 21, Plan.local(model.graph, "yolov3_tiny"),
                                                             x, out_pkts.append)
    out = packet_to_msg(out_pkts[0], header, (768, 576), "yolov3_tiny", now, client.session)
    out.encoding, out.dtype, out.data = "lz4", "float32", bomb
    pids = {name: launch.processes[name].pid for name in ("edge_node", "aggregator_node")}
    peak = {name: _peak_rss_kib(pid) for name, pid in pids.items()}
    before = client.counter("edge_node", "bad_tiles"), client.counter("aggregator_node", "bad_outputs")
    client.publish_now(client.tiles, tile)
    client.publish_now(client.outputs, out)
    client.spin_until(lambda: client.counter("edge_node", "bad_tiles") > before[0], "the edge to refuse it")
    client.spin_until(lambda: client.counter("aggregator_node", "bad_outputs") > before[1], "the aggregator, too")
    for name, pid in pids.items():
        grown_mib = (_peak_rss_kib(pid) - peak[name]) / 1024
        assert grown_mib < 10, f"{name}: peak RSS grew {grown_mib:.0f} MiB"
    launch.wait_for_output(r"does not match|needs", node="edge_node", timeout=10)
    bgr = load_sample("dog.jpg")
    _same(client.detect(bgr), model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def test_other_sessions_replays_and_duplicates_never_reach_the_detections(world):
    """The outputs of a published frame, sent again as they were (a replay: duplicates), and under another session
    (another robot, or this one before a restart): counted, ignored, and never published."""
    client, model, _, _ = world
    bgr = load_sample("horses.jpg")
    del client.seen_outputs[:]
    got = client.detect(bgr)
    client.spin_until(lambda: client.session, "the robot's session")
    frame = [m for m in client.seen_outputs if m.frame_seq == got.frame_seq]
    assert frame and all(m.session == client.session for m in frame)
    n = len(client.detections)      # every detection published so far reached us (reliable QoS)
    client.spin_until(lambda: client.counter("aggregator_node", "frames_published") == n, "the counters to catch up")
    late, foreign = (client.counter("aggregator_node", k) for k in ("late_outputs_discarded", "foreign_session"))
    for m in frame:
        client.outputs.publish(m)                                  # a replay of the frame just published
    for m in frame:
        m.session, m.frame_seq = "0123456789abcdef", m.frame_seq + 1000   # another session's "new" frame
        client.outputs.publish(m)
    client.spin_until(lambda: client.counter("aggregator_node", "late_outputs_discarded") >= late + len(frame)
                      and client.counter("aggregator_node", "foreign_session") >= foreign + len(frame),
                      "the aggregator to count the replays and the foreign outputs")
    assert client.counter("aggregator_node", "frames_published") == n and len(client.detections) == n
    _same(client.detect(bgr), model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))   # the next is genuine


def test_ctrl_c_with_frames_in_flight_is_quiet(world):
    """Last in this module (it stops the nodes): SIGINT, as ros2 launch sends it, while frames are on their way
    through robot, edge and aggregator; every node exits 0 without a traceback or an error line."""
    client, _model, _plans, launch = world
    bgr = load_sample("dog.jpg")
    n = len(client.detections)
    for _ in range(3):
        client.send_image(bgr)
        rclpy.spin_once(client, timeout_sec=0.05)
    client.spin_until(lambda: len(client.detections) > n, "a first result (the others are still in flight)")
    client.send_image(bgr)
    start_line = len(launch.lines)
    codes = launch.stop(timeout=15.0)
    assert all(code == 0 for code in codes.values()), codes
    after = list(launch.lines)[start_line:]
    assert not [ln for ln in after if "Traceback" in ln or "Error" in ln or "ERROR" in ln], after
