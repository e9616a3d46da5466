"""Dense (segmentation) models served by the real nodes: a user's own network, defined only in this test
(`model:=<module>:build` loads it on robot, edge and aggregator alike), and the zoo's unet_small.
/intradp/segmentation carries a mono8 class id per camera pixel, equal to single-process inference pixel for pixel,
under a split spanning the network; the annotated image overlays the mask."""
from __future__ import annotations

import os
import sys
import textwrap

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from intradp_ros.engine.plan import Plan  # noqa: E402
from intradp_ros.engine.rows import Segment  # noqa: E402
from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.msg import FrameTiming  # noqa: E402
from intradp_ros.nodes.common import topic_qos  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.topology import TOPICS  # noqa: E402
from intradp_ros.vision.image_convert import array_to_image_fields, image_to_array  # noqa: E402
from intradp_ros.vision.samples import load_sample  # noqa: E402
from ros_helpers import print_outputs, robot_listening, spin_until  # noqa: E402

WAIT = 90.0
# A U-Net step whose decoder pads to the skip's size from shapes (odd at 120 px: 120 -> 60 -> 30 -> 15), with a
# reflect pad and a bilinear resize; 5 classes.
USER_MODULE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from intradp_ros.models import UserModel


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU6())
        self.down = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3, 2), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.up = nn.ConvTranspose2d(8, 8, 2, 2)
        self.head = nn.Conv2d(16, 5, 3, 1, 1)

    def forward(self, x):
        skip = self.enc(x)
        u = F.interpolate(self.up(self.down(skip)), scale_factor=2.0, mode="bilinear", align_corners=False)
        u = F.pad(u, [0, skip.shape[-1] - u.shape[-1], 0, skip.shape[-2] - u.shape[-2]])
        return self.head(torch.cat([skip, u], 1))


def build():
    return UserModel(TinySeg().eval(), input_size=120, task="dense")
'''


class Client(Node):
    def __init__(self):
        super().__init__("intradp_test_user_model")
        self.masks: list[Image] = []
        self.annotated: list[Image] = []
        self.timing: list[FrameTiming] = []
        self.camera = self.create_publisher(Image, TOPICS["camera"].name, topic_qos("camera"))
        self.create_subscription(Image, TOPICS["segmentation"].name, self.masks.append, topic_qos("segmentation"))
        self.create_subscription(Image, TOPICS["annotated"].name, self.annotated.append, topic_qos("annotated"))
        self.create_subscription(FrameTiming, TOPICS["timing"].name, self.timing.append, topic_qos("timing"))

    def spin_until(self, cond, what: str, timeout: float = WAIT):
        spin_until(self, cond, what, timeout)


@pytest.fixture(scope="module", params=["user_seg_model:build", "unet_small"])
def world(request, tmp_path_factory):
    if load_sample("dog.jpg") is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    tmp = tmp_path_factory.mktemp("user_model")
    (tmp / "user_seg_model.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(tmp))
    name = request.param
    model = ModelRuntime(ModelConfig(model=name))
    g = model.graph
    n = len(g.ops)
    plan = Plan(name, model.size, model.size, 0, n, Segment(g, 0, n).grid // 2, 3, 2)   # one split: the network
    domain = str(100 + (os.getpid() + 37) % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=domain,
               PYTHONPATH=os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]))
    robot = str(with_overrides(share_dir() / "config" / "robot.yaml", {
        "robot_node": {"plan": plan.spec(), "profile_cache_dir": str(tmp)},
        "aggregator_node": {"publish_annotated": True}}, tmp))
    edge = str(with_overrides(share_dir() / "config" / "edge.yaml", {"edge_node": {"profile_cache_dir": str(tmp)}},
                              tmp))
    launch = start("all", {"start_camera": "false", "model": name, "robot_params_file": robot,
                           "edge_params_file": edge}, env=env)
    os.environ["ROS_DOMAIN_ID"] = domain
    rclpy.init()
    client = Client()
    try:
        client.spin_until(lambda: robot_listening(client, client.camera, TOPICS["camera"].name)
                          or launch.poll() not in (None, 0), "robot_node to become ready")
        assert launch.poll() in (None, 0), launch.output
        yield client, model, plan
    finally:
        client.destroy_node()
        rclpy.shutdown()
        launch.stop()
        sys.path.remove(str(tmp))
        print_outputs({name: launch})


def test_a_dense_model_gives_the_single_process_mask_pixel_for_pixel(world):
    client, model, plan = world
    for name in ("dog.jpg", "person.jpg"):
        bgr = load_sample(name)
        msg = Image(**array_to_image_fields(bgr, "bgr8"))
        msg.header.stamp = client.get_clock().now().to_msg()
        msg.header.frame_id = "test_camera"
        n, stamp = len(client.masks), msg.header.stamp
        client.camera.publish(msg)
        client.spin_until(lambda n=n: len(client.masks) > n, "the segmentation mask")
        got = client.masks[n]
        assert got.header.stamp == msg.header.stamp and got.encoding == "mono8"
        assert (got.height, got.width) == bgr.shape[:2]
        mask = image_to_array(got.encoding, got.height, got.width, got.step, got.data, bool(got.is_bigendian))
        ref = model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert ref.shape == bgr.shape[:2] and len(np.unique(ref)) > 1      # a mask with more than one class
        assert np.array_equal(mask, ref)
        client.spin_until(lambda s=stamp: any(t.header.stamp == s for t in client.timing), "its FrameTiming")
        timing = next(t for t in client.timing if t.header.stamp == stamp)
        assert timing.plan_spec == plan.spec()
        # every FrameTiming field is filled: the robot's share and its bytes to the edge (relayed by the edge)
        assert timing.robot_compute_ms > 0 and timing.edge_compute_ms > 0 and timing.aggregator_ms > 0
        assert timing.bytes_robot_to_edge > 0 and timing.bytes_to_aggregator > 0 and timing.latency_ms > 0
    client.spin_until(lambda: len(client.annotated) >= 2, "the annotated images")
    shown = client.annotated[-1]
    assert (shown.height, shown.width) == bgr.shape[:2]
    shown_bgr = image_to_array(shown.encoding, shown.height, shown.width, shown.step, shown.data, False)
    assert not np.array_equal(shown_bgr, bgr)          # the mask is drawn over the frame
