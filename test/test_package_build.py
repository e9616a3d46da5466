"""The colcon build of intradp_ros is complete: executables, messages, installed resources.

Runs against the build that ``./intradp setup`` leaves in ``.colcon/install`` (``./intradp test``
sources it first).
"""

import configparser
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALL = REPO / ".colcon" / "install"
SHARE = INSTALL / "share" / "intradp_ros"

# The executables `ros2 run intradp_ros <exe>` must find, and the modules they start.
EXECUTABLES = {
    "camera_player": "intradp_ros.nodes.camera_player:main",
    "robot_node": "intradp_ros.nodes.robot_node:main",
    "edge_node": "intradp_ros.nodes.edge_node:main",
    "aggregator_node": "intradp_ros.nodes.aggregator_node:main",
}

MESSAGES = [
    "TensorTile",
    "Detection",
    "DetectionArray",
    "Classification",
    "FrameTiming",
    "EdgeProfile",
    "PlanStatus",
    "LinkEstimate",
    "EdgeStatus",
]

pytestmark = pytest.mark.skipif(
    not (INSTALL / "local_setup.bash").is_file(),
    reason="no colcon build in .colcon/install: run ./intradp setup",
)


def _console_scripts():
    """The console_scripts of setup.cfg, the one list both colcon and pip install use."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "setup.cfg")
    lines = parser.get("options.entry_points", "console_scripts").splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip())
    return {name.strip(): target.strip() for name, target in pairs}


def test_setup_cfg_lists_the_executables():
    assert _console_scripts() == EXECUTABLES


@pytest.mark.parametrize("exe", sorted(EXECUTABLES))
def test_executable_installed(exe):
    path = INSTALL / "lib" / "intradp_ros" / exe
    assert path.is_file(), f"{path} missing: rebuild with ./intradp setup"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    module, func = EXECUTABLES[exe].split(":")
    assert f"from {module} import {func}" in path.read_text(), f"{path} does not start {module}"


def test_generated_messages_import():
    import intradp_ros.msg as msgs

    for name in MESSAGES:
        assert hasattr(msgs, name), f"intradp_ros.msg.{name} was not generated"
    # The generated module lives in the install tree, next to the installed sources.
    assert str(INSTALL) in msgs.__file__


def test_tensor_tile_round_trip_1mib():
    from builtin_interfaces.msg import Time
    from intradp_ros.msg import TensorTile
    from rclpy.serialization import deserialize_message, serialize_message

    payload = bytes(range(256)) * 4096  # 1 MiB, not constant, so corruption would show
    tile = TensorTile()
    tile.header.frame_id = "camera"
    tile.header.stamp = Time(sec=12, nanosec=345)
    tile.frame_seq = 2**40 + 7
    tile.plan_id = 0xDEADBEEF
    tile.plan_spec = "yolov3_tiny|tiles=2"
    tile.model = "yolov3_tiny"
    tile.tensor = "conv_4"
    tile.stage = 1
    tile.tile_index = 1
    tile.tile_count = 2
    tile.sender = "robot"
    tile.row_start, tile.row_stop = 26, 52
    tile.halo_top, tile.halo_bottom = 1, 0
    tile.shape = [1, 64, 52, 52]
    tile.dtype = "float32"
    tile.encoding = "raw"
    tile.image_width, tile.image_height = 768, 576
    tile.sent = Time(sec=12, nanosec=999)
    tile.compute_ms = 4.5
    tile.data = payload

    wire = serialize_message(tile)
    assert len(wire) > len(payload)
    back = deserialize_message(wire, TensorTile)
    assert bytes(back.data) == payload
    assert list(back.shape) == [1, 64, 52, 52]
    assert (back.frame_seq, back.plan_id, back.plan_spec) == (2**40 + 7, 0xDEADBEEF, tile.plan_spec)
    assert (back.row_start, back.row_stop, back.halo_top, back.halo_bottom) == (26, 52, 1, 0)
    assert back.header.stamp.nanosec == 345 and back.sent.nanosec == 999
    assert back.compute_ms == pytest.approx(4.5)


def test_installed_resources():
    assert (SHARE / "package.xml").is_file()
    assert (SHARE / "config" / "fastdds.xml").is_file()
    for msg in MESSAGES:
        assert (SHARE / "msg" / f"{msg}.msg").is_file()
    for pattern, folder in (("config/*.yaml", "config"), ("launch/*.py", "launch")):
        for source in sorted(REPO.glob(pattern)):
            installed = SHARE / folder / source.name
            assert installed.is_file(), f"{source.relative_to(REPO)} is not installed: ./intradp setup"
