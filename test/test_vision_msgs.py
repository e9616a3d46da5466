"""Detections as vision_msgs/msg/Detection2DArray, against a STAND-IN vision_msgs (PyPI has no vision_msgs).

The stand-in is test data: the seven messages intradp_ros fills (Detection2DArray, Detection2D,
ObjectHypothesisWithPose, ObjectHypothesis, BoundingBox2D, Pose2D, Point2D), written below from vision_msgs' documented
fields (4.x, Humble and later), built once per module with the toolchain scripts/setup.sh uses for intradp_ros'
own messages (colcon, the venv's Python, cmake/fix_wheel_include_dirs.cmake) into a temporary workspace, C and
Python code only (what rclpy uses). Nothing of it is installed with the project, and it reaches only subprocesses
given its environment (its local_setup.bash, sourced): this test process never has it on its path.

(a) detections_out converts the real detector's detections into Detection2DArray with the same boxes, scores and
    classes as intradp_ros/DetectionArray, through a serialization round trip;
(b) the real nodes, with the stand-in in their environment and detections_type auto, publish Detection2DArray on
    /intradp/detections, and a user's node (a subprocess with the same environment) receives detections equal to
    single-device inference;
(c) without vision_msgs, auto means intradp_ros/DetectionArray and detections_type vision_msgs stops the aggregator
    at start-up with one ERROR line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pytest

rclpy = pytest.importorskip("rclpy")

from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.nodes.detections_out import Box, detections_message, detections_type, read_detections  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.vision.samples import load_sample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("dog.jpg", "person.jpg")

# vision_msgs 4.x fields (https://docs.ros.org/en/jazzy/p/vision_msgs/), only those intradp_ros publishes.
STANDIN_MSGS = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}
STANDIN_PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>vision_msgs</name>
  <version>4.1.0</version>
  <description>Test stand-in for vision_msgs (intradp_ros' tests only), from the documented message fields</description>
  <maintainer email="tests@example.com">intradp_ros tests</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""
STANDIN_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(vision_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(geometry_msgs REQUIRED)
# Python only needs the C generator and typesupports: leaving out the four C++ ones halves the build (~30 s of ~60)
list(FILTER AMENT_EXTENSIONS_rosidl_generate_idl_interfaces EXCLUDE REGEX
     "^rosidl_(generator|typesupport|typesupport_fastrtps|typesupport_introspection)_cpp:")
rosidl_generate_interfaces(${PROJECT_NAME} %s DEPENDENCIES std_msgs geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
""" % " ".join(f'"msg/{name}.msg"' for name in STANDIN_MSGS)


def _vision_msgs_here() -> bool:
    try:
        import vision_msgs.msg  # noqa: F401
        return True
    except ImportError:
        return False


def _sourced_env(setup: Path) -> dict[str, str]:
    """This environment with ``setup`` (a colcon local_setup.bash) sourced."""
    out = subprocess.run(["bash", "-c", f'source "{setup}" >/dev/null && env -0'], capture_output=True, check=True,
                         env=os.environ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Build the stand-in vision_msgs: its install prefix and the environment variables that put it in front (for
    subprocesses)."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not os.access(colcon, os.X_OK) or shutil.which("cmake") is None:
        pytest.skip("building the vision_msgs stand-in needs colcon and cmake (./intradp setup installs colcon)")
    ws = tmp_path_factory.mktemp("vision_msgs_ws")
    pkg = ws / "src" / "vision_msgs"
    (pkg / "msg").mkdir(parents=True)
    (pkg / "package.xml").write_text(STANDIN_PACKAGE_XML)
    (pkg / "CMakeLists.txt").write_text(STANDIN_CMAKE)
    for name, text in STANDIN_MSGS.items():
        (pkg / "msg" / f"{name}.msg").write_text(text)
    env = dict(os.environ)
    if not env.get("ROS_DISTRO"):         # ROS 2 from PyPI: the venv prefix is the underlay (as scripts/setup.sh)
        venv = str(Path(sys.executable).resolve().parents[1]) if not env.get("VIRTUAL_ENV") else env["VIRTUAL_ENV"]
        for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
            env[var] = os.pathsep.join([venv] + [p for p in env.get(var, "").split(os.pathsep) if p and p != venv])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    t0 = time.monotonic()
    build = subprocess.run(
        [colcon, "--log-base", str(ws / "log"), "build", "--paths", str(pkg), "--build-base", str(ws / "build"),
         "--install-base", str(ws / "install"), "--merge-install", "--event-handlers", "console_direct-",
         "--cmake-args", f"-DCMAKE_PROJECT_INCLUDE={REPO / 'cmake' / 'fix_wheel_include_dirs.cmake'}",
         "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    logs = sorted((ws / "log").glob("latest_build/vision_msgs/std*.log"))
    if build.returncode != 0:
        tail = "\n".join(p.read_text()[-3000:] for p in logs) or build.stdout[-3000:] + build.stderr[-3000:]
        pytest.fail(f"colcon build of the vision_msgs stand-in failed ({build.returncode}):\n{tail}")
    print(f"vision_msgs stand-in built in {time.monotonic() - t0:.1f} s")
    sourced = _sourced_env(ws / "install" / "local_setup.bash")
    return ws / "install", {k: v for k, v in sourced.items() if os.environ.get(k) != v and k not in (
        "SHLVL", "PWD", "OLDPWD", "_")}


def _python(code: str, env: dict[str, str], *args: str, timeout: float = 120.0) -> dict:
    """Run ``code`` in a fresh interpreter with ``env`` added; its last stdout line, parsed as JSON."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"subprocess failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def _reference(model: ModelRuntime, name: str):
    bgr = load_sample(name)
    return model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _same(got: list[Box], ref) -> None:
    """``got`` (read back from a message) are the detections ``ref`` of single-device inference."""
    assert [(b.class_id, b.class_name) for b in got] == [(int(d.class_id), d.class_name) for d in ref]
    for b, d in zip(got, ref):
        assert abs(b.score - d.score) <= 1e-4
        assert max(abs(b.center_x - d.center_x), abs(b.center_y - d.center_y), abs(b.size_x - d.size_x),
                   abs(b.size_y - d.size_y)) <= 1e-2


@pytest.fixture(scope="module")
def model() -> ModelRuntime:
    if any(load_sample(name) is None for name in IMAGES):
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    return ModelRuntime(ModelConfig())


CONVERT = """
    import json, sys
    import vision_msgs.msg
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from intradp_ros.msg import DetectionArray
    from intradp_ros.nodes.detections_out import Box, detections_message, detections_type, read_detections
    from intradp_ros.vision.detection import Detection

    dets = [Detection(*d) for d in json.loads(sys.argv[1])]
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    auto = detections_type("auto")
    assert auto is vision_msgs.msg.Detection2DArray and detections_type("vision_msgs") is auto, auto
    ours = detections_message(detections_type("intradp"), header, 7, "plan", dets)
    theirs = detections_message(auto, header, 7, "plan", dets)
    assert type(ours) is DetectionArray and type(theirs) is auto
    wire = deserialize_message(serialize_message(theirs), auto)
    assert wire == theirs
    for d in wire.detections:
        assert d.header == header and len(d.results) == 1
    first = wire.detections[0] if wire.detections else None
    print(json.dumps({"module": vision_msgs.msg.__file__, "ours": read_detections(ours),
                      "theirs": read_detections(wire), "header": [wire.header.frame_id, wire.header.stamp.sec],
                      "first": first and {"class_id": first.results[0].hypothesis.class_id, "id": first.id,
                                          "score": first.results[0].hypothesis.score,
                                          "center": [first.bbox.center.position.x, first.bbox.center.position.y],
                                          "size": [first.bbox.size_x, first.bbox.size_y]}}))
"""


def test_conversion_keeps_the_real_detections(standin, model):
    install, env = standin
    for name in IMAGES:
        ref = _reference(model, name)
        assert ref, f"no detections in {name}"
        dets = [[int(d.class_id), d.class_name, float(d.score), float(d.center_x), float(d.center_y),
                 float(d.size_x), float(d.size_y)] for d in ref]
        got = _python(CONVERT, env, json.dumps(dets))
        assert Path(got["module"]).resolve().is_relative_to(install.resolve()), got["module"]   # the stand-in
        ours, theirs = [Box(*b) for b in got["ours"]], [Box(*b) for b in got["theirs"]]
        assert theirs == ours                # the same content, float32 scores included
        _same(theirs, ref)
        assert got["header"] == ["camera", 12]
        top = ref[0]
        assert got["first"]["class_id"] == top.class_name and got["first"]["id"] == str(top.class_id)
        assert got["first"]["center"] == pytest.approx([top.center_x, top.center_y], abs=1e-3)
        assert got["first"]["size"] == pytest.approx([top.size_x, top.size_y], abs=1e-3)


USER = """
    import json, sys, time
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from intradp_ros.nodes.common import topic_qos
    from intradp_ros.nodes.detections_out import detections_type, read_detections, type_name
    from intradp_ros.topology import TOPICS
    from intradp_ros.vision.image_convert import array_to_image_fields
    from intradp_ros.vision.samples import load_sample

    rclpy.init()
    node = Node("intradp_vision_msgs_user")
    kind = detections_type("auto")
    got = []
    node.create_subscription(kind, TOPICS["detections"].name, got.append, topic_qos("detections"))
    camera = node.create_publisher(Image, TOPICS["camera"].name, topic_qos("camera"))

    def spin_until(cond, what, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            rclpy.spin_once(node, timeout_sec=0.1)

    def robot_listening():
        subs = node.get_subscriptions_info_by_topic(TOPICS["camera"].name)
        return any(s.node_name == "robot_node" for s in subs) and camera.get_subscription_count() >= len(subs)
    spin_until(robot_listening, "robot_node to subscribe to the camera", 120)
    out = {"subscribed_as": type_name(kind), "frames": {}}
    for name in sys.argv[1:]:
        msg = Image(**array_to_image_fields(load_sample(name), "bgr8"))
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "test_camera"
        n = len(got)
        camera.publish(msg)
        spin_until(lambda: len(got) > n, f"the detections of {name}", 60)
        d = got[n]
        assert d.header.stamp == msg.header.stamp and d.header.frame_id == "test_camera"
        assert all(x.header == d.header for x in d.detections)
        out["frames"][name] = read_detections(d)
    out["published_as"] = dict(node.get_topic_names_and_types()).get("/" + TOPICS["detections"].name)
    print(json.dumps(out))
"""


def test_the_nodes_publish_detection2d_array_equal_to_one_device(standin, model, tmp_path):
    domain = str(40 + os.getpid() % 50)
    params = {"robot_node": {"plan": "offload", "profile_cache_dir": str(tmp_path), "send_selftest": False},
              "aggregator_node": {"detections_type": "auto"}}
    robot = str(with_overrides(share_dir() / "config" / "robot.yaml", params, tmp_path))
    edge = str(with_overrides(share_dir() / "config" / "edge.yaml",
                              {"edge_node": {"profile_cache_dir": str(tmp_path)}}, tmp_path))
    env = dict(standin[1], ROS_DOMAIN_ID=domain)
    launch = start("all", {"start_camera": "false", "robot_params_file": robot, "edge_params_file": edge}, env=env)
    try:
        got = _python(USER, env, *IMAGES, timeout=240)
        launch.wait_for_output(r"vision_msgs/msg/Detection2DArray", node="aggregator_node", timeout=10)
    except BaseException:
        for name, lines in launch.output.items():     # shown by pytest when the test fails
            print(f"---- {name}\n" + "\n".join(list(lines)[-25:]))
        raise
    finally:
        launch.stop()
    assert got["subscribed_as"] == "vision_msgs/msg/Detection2DArray"
    assert got["published_as"] == ["vision_msgs/msg/Detection2DArray"]
    for name in IMAGES:
        _same([Box(*b) for b in got["frames"][name]], _reference(model, name))


@pytest.mark.skipif(_vision_msgs_here(), reason="vision_msgs is installed here")
def test_without_vision_msgs_auto_is_ours_and_vision_msgs_is_a_startup_error(tmp_path):
    from intradp_ros.msg import DetectionArray
    assert detections_type() is DetectionArray and detections_type("intradp") is DetectionArray
    with pytest.raises(ValueError, match="detections_type vision_msgs: cannot import vision_msgs"):
        detections_type("vision_msgs")
    with pytest.raises(ValueError, match="not one of auto | vision_msgs | intradp"):
        detections_type("yolo")
    box = Box(16, "dog", 0.5, 10.0, 20.0, 30.0, 40.0)
    msg = detections_message(DetectionArray, DetectionArray().header, 3, "p", [box])
    assert (msg.frame_seq, msg.plan_spec, read_detections(msg)) == (3, "p", [box])
    run = subprocess.run([sys.executable, "-m", "intradp_ros.nodes.aggregator_node", "--ros-args",
                          "-p", "detections_type:=vision_msgs"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, ROS_DOMAIN_ID=str(40 + os.getpid() % 50)))
    assert run.returncode == 1, run.stdout + run.stderr
    errors = [line for line in (run.stdout + run.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "detections_type vision_msgs" in errors[0], run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
