"""camera_player with real rclpy: the node runs as its own process on a private ROS_DOMAIN_ID and this
test process subscribes to it. Synchronisation is by events (log lines, received messages) with
deadlines, never by sleeping.
"""
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy not importable: run through ./intradp test')
sensor_msgs = pytest.importorskip('sensor_msgs.msg', reason='sensor_msgs not importable')
yaml = pytest.importorskip('yaml')

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402

from intradp_ros.launcher import Launch  # noqa: E402
from intradp_ros.topology import NODES, TOPICS  # noqa: E402
from intradp_ros.vision.image_convert import image_to_array  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALLED = REPO / '.colcon' / 'install' / 'lib' / 'intradp_ros' / 'camera_player'
SPEC = next(n for n in NODES if n.name == 'camera_player')
# Not the default domain, and not another test run's: pytest-xdist workers and parallel CI jobs differ in pid.
DOMAIN_ID = 20 + os.getpid() % 80


def _command(*params):
    exe = [str(INSTALLED)] if os.access(INSTALLED, os.X_OK) else [
        sys.executable, '-c', 'import sys; from intradp_ros.nodes.camera_player import main; sys.exit(main())']
    return exe + ['--ros-args', '-p', 'rate_hz:=20.0', *params]


@pytest.fixture(scope='module')
def reliable(tmp_path_factory):
    """--ros-args making the camera's publisher reliable, depth 10, through rclpy's standard QoS override
    parameters (``qos_overrides./camera/image_raw.publisher.*``), as a deployment's qos_file would."""
    path = tmp_path_factory.mktemp('qos') / 'reliable.yaml'
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'qos_overrides': {
        '/' + TOPICS['camera'].name: {'publisher': {'reliability': 'reliable', 'depth': 10}}}}}}))
    return ['--params-file', str(path)]


@pytest.fixture
def player():
    """Start camera_player with extra --ros-args; yields a function returning the running Launch."""
    launches = []
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED='1')

    def run(*params):
        launch = Launch('robot', [(SPEC, _command(*params))], env)
        launches.append(launch)
        return launch

    yield run
    for launch in launches:
        launch.stop(timeout=5.0)


class Receiver:
    """A subscription to the camera topic in this process, on the test's domain."""

    def __init__(self, qos):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = Node('camera_player_test', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.frames = []
        self.subscription = self.node.create_subscription(sensor_msgs.Image, TOPICS['camera'].name,
                                                          self.frames.append, qos)

    def unsubscribe(self):
        """Drop the subscription once the frames are in. A reliable reader that stays matched makes Fast DDS
        take ~3 s more to tear down the player's process after main() returned."""
        self.node.destroy_subscription(self.subscription)

    def spin_until(self, condition, timeout, launch=None):
        """Spin until condition() holds; False after ``timeout`` s or when the player exited without it."""
        deadline = self.node.get_clock().now().nanoseconds + int(timeout * 1e9)
        while not condition():
            if self.node.get_clock().now().nanoseconds > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.1)
            if launch is not None and launch.processes['camera_player'].poll() is not None:
                self.executor.spin_once(timeout_sec=0.5)   # what was in flight when it exited
                return condition()
        return True

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.context.destroy()      # the DDS participant goes now, not at garbage collection


@pytest.fixture
def receiver():
    receivers = []

    def make(qos):
        receivers.append(Receiver(qos))
        return receivers[-1]

    yield make
    for r in receivers:
        r.close()


def test_pattern_count_waits_for_subscriber(player, receiver, reliable):
    """count=3 frames, published only once the subscription is matched (started before it exists)."""
    launch = player('-p', 'source:=pattern', '-p', 'count:=3', '-p', 'width:=320', '-p', 'height:=240',
                    '-p', 'encoding:=rgb8', '-p', 'frame_id:=test_cam', '-p', 'exit_when_done:=true', *reliable)
    launch.wait_for_output(r'waiting for 1 subscriber', timeout=30)
    sub = receiver(QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    assert sub.spin_until(lambda: len(sub.frames) >= 3, timeout=30, launch=launch), launch.lines
    # the override reached the middleware: the publisher is discovered as reliable (the default is best effort)
    info = sub.node.get_publishers_info_by_topic('/' + TOPICS['camera'].name)
    assert [i.qos_profile.reliability for i in info] == [ReliabilityPolicy.RELIABLE]
    launch.wait_for_output(r'done: published 3 frame', timeout=10)
    sub.spin_until(lambda: False, timeout=0.3)       # a 4th frame, if one were (wrongly) sent, would arrive here
    sub.unsubscribe()
    assert launch.processes['camera_player'].wait(timeout=15) == 0
    assert len(sub.frames) == 3
    for msg in sub.frames:
        assert (msg.encoding, msg.width, msg.height, msg.step) == ('rgb8', 320, 240, 320 * 3)
        assert msg.header.frame_id == 'test_cam'
        assert msg.header.stamp.sec > 0
        assert image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data).shape == (240, 320, 3)
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in sub.frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_image_folder_each_frame_once(player, receiver, tmp_path, reliable):
    cv2 = pytest.importorskip('cv2')
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(images):
        assert cv2.imwrite(str(tmp_path / f'frame_{i}.png'), img)
    (tmp_path / 'notes.txt').write_text('not an image')
    sub = receiver(QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    launch = player('-p', f'source:={tmp_path}', '-p', 'exit_when_done:=true', *reliable)
    assert sub.spin_until(lambda: len(sub.frames) >= 3, timeout=30, launch=launch), launch.lines
    sub.unsubscribe()
    assert launch.processes['camera_player'].wait(timeout=15) == 0
    launch.wait_for_output(r'done: published 3 frame\(s\) from 3 images in', timeout=5)
    for msg, img in zip(sub.frames, images):
        assert msg.encoding == 'bgr8'
        np.testing.assert_array_equal(image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data), img)


def test_single_image_mono16_cycles_to_count(player, receiver, tmp_path, reliable):
    cv2 = pytest.importorskip('cv2')
    path = tmp_path / 'one.png'
    grey = np.full((10, 12, 3), 128, np.uint8)
    assert cv2.imwrite(str(path), grey)
    sub = receiver(QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    launch = player('-p', f'source:={path}', '-p', 'count:=4', '-p', 'encoding:=mono16',
                    '-p', 'exit_when_done:=true', *reliable)
    assert sub.spin_until(lambda: len(sub.frames) >= 4, timeout=30, launch=launch), launch.lines
    sub.unsubscribe()
    assert launch.processes['camera_player'].wait(timeout=15) == 0
    assert len(sub.frames) == 4
    arr = image_to_array('mono16', 10, 12, sub.frames[0].step, sub.frames[0].data, sub.frames[0].is_bigendian)
    assert arr.dtype == np.uint16 and int(arr[0, 0]) == 128 * 257


def test_video_file(player, receiver, tmp_path, reliable):
    cv2 = pytest.importorskip('cv2')
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip('this OpenCV build cannot write MJPG video')
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    sub = receiver(QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    launch = player('-p', f'source:={path}', '-p', 'encoding:=bgra8', '-p', 'exit_when_done:=true', *reliable)
    assert sub.spin_until(lambda: len(sub.frames) >= 5, timeout=30, launch=launch), launch.lines
    sub.unsubscribe()
    assert launch.processes['camera_player'].wait(timeout=15) == 0
    assert len(sub.frames) == 5
    for i, msg in enumerate(sub.frames):
        arr = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        assert arr.shape == (48, 64, 4) and (arr[..., 3] == 255).all()
        assert abs(int(arr[..., 0].mean()) - 40 * i) <= 3          # MJPG is lossy


def test_default_qos_best_effort_stream_and_clean_sigint(player, receiver):
    """The default camera QoS (sensor data), an endless pattern, stopped with SIGINT like ros2 launch does."""
    sub = receiver(qos_profile_sensor_data)
    launch = player('-p', 'source:=pattern', '-p', 'width:=64', '-p', 'height:=48')
    assert sub.spin_until(lambda: len(sub.frames) >= 3, timeout=30, launch=launch), launch.lines
    assert all((m.width, m.height, m.encoding) == (64, 48, 'bgr8') for m in sub.frames)
    info = sub.node.get_publishers_info_by_topic('/' + TOPICS['camera'].name)
    assert [i.qos_profile.reliability for i in info] == [ReliabilityPolicy.BEST_EFFORT]
    proc = launch.processes['camera_player']
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0


def test_missing_source_exit_when_done(player):
    launch = player('-p', 'source:=/nonexistent/frames', '-p', 'exit_when_done:=true')
    line = launch.wait_for_output(r'does not exist', timeout=30)
    assert '/nonexistent/frames' in line and 'ERROR' in line
    assert launch.processes['camera_player'].wait(timeout=15) == 1


def test_missing_source_stays_alive(player):
    launch = player('-p', 'source:=/nonexistent/frames')
    launch.wait_for_output(r'does not exist.*node stays up', timeout=30)
    with pytest.raises(subprocess.TimeoutExpired):   # asserting it does NOT exit: a bounded wait is the test
        launch.processes['camera_player'].wait(timeout=1.0)


def test_bad_parameter_fails_fast(player):
    launch = player('-p', 'encoding:=yuv422')
    launch.wait_for_output(r'bad parameter: encoding .yuv422. is not one of', timeout=30)
    assert launch.processes['camera_player'].wait(timeout=15) == 2


def test_declared_parameters_match_robot_yaml():
    """config/robot.yaml's camera_player block lists exactly the node's parameters, with its defaults."""
    from intradp_ros.nodes.camera_player import CameraPlayer
    from intradp_ros.nodes.common import make_executor

    blocks = yaml.safe_load((REPO / 'config' / SPEC.params_file).read_text())
    key = next(k for k in blocks if k.rsplit('/', 1)[-1] == 'camera_player')
    yaml_params = blocks[key]['ros__parameters']
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        plain = Node('plain', context=context)
        builtin = set(plain.get_parameters_by_prefix(''))      # use_sim_time, ... of every rclpy node
        plain.destroy_node()
        node = CameraPlayer(context=context)
        try:
            make_executor(node)         # run_node declares every node's `executor` parameter
            declared = {name: p.value for name, p in node.get_parameters_by_prefix('').items()
                        if not name.startswith('qos_overrides.') and name not in builtin}
            assert declared == yaml_params
            assert node.describe_parameter('source').description   # declared with a description
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('value, expected', [('single', 'SingleThreadedExecutor'), ('multi', 'MultiThreadedExecutor'),
                                             ('bogus', 'SingleThreadedExecutor')])
def test_executor_parameter(value, expected):
    """Every node spins on the executor its `executor` parameter names; a bad name is logged, not fatal."""
    from rclpy.parameter import Parameter
    from intradp_ros.nodes.common import make_executor

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        node = Node('executor_probe', context=context, parameter_overrides=[Parameter('executor', value=value)])
        try:
            executor = make_executor(node)
            assert type(executor).__name__ == expected
            executor.shutdown()
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
