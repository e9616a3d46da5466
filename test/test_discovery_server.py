"""Discovery without multicast: robot and edge in two network namespaces (a veth between them, no multicast route
in either), each `./intradp launch` given `discovery_server:=<edge>:11811`, and a Fast DDS Discovery Server
(`./intradp discovery-server`) in the edge's namespace. The robot finds the edge through the server alone, its
tiles cross the veth (the edge's DDS profile is UDP only), and its detections equal single-device inference."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest

pytest.importorskip("rclpy")

from intradp_ros.engine.plan import Plan  # noqa: E402
from intradp_ros.launcher import share_dir  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools import netem  # noqa: E402
from intradp_ros.tools.bench_config import config_file  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.vision.samples import find_samples, load_sample  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGES = ("dog.jpg", "person.jpg")
PORT = 11811


class Output:
    """A process's stdout, read on a thread (a full pipe would stall the nodes), waited on by :meth:`wait_for`."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines, self._cond = proc, [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<exited>")
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: any(text in ln or ln == "<exited>" for ln in self.lines), timeout) \
                    or not any(text in ln for ln in self.lines):
                raise AssertionError(f"no {text!r} from {self.proc.args[-3:]}:\n" + "\n".join(self.lines[-30:]))


def _tx_bytes(tb: netem.Testbed, side: str) -> int:
    out = subprocess.run(["ip", "-n", tb.ns[side], "-s", "-j", "link", "show", "dev", tb.dev[side]],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def test_robot_and_edge_discover_each_other_through_a_discovery_server_without_multicast(tmp_path):
    reason = netem.unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    if find_samples() is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    model = ModelRuntime(ModelConfig())
    plan = Plan.cut(model.graph, "yolov3_tiny", 12, "lz4")        # both sides compute, tiles cross the link
    env = {k: v for k, v in os.environ.items()
           if k not in ("ROS_STATIC_PEERS", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                        "ROS_DISCOVERY_SERVER", "FASTRTPS_DEFAULT_PROFILES_FILE")}
    env.update(ROS_DOMAIN_ID=str(random.randint(120, 229)), PYTHONUNBUFFERED="1")
    tb = netem.Testbed(subnet="10.79.0", cpu_quota_us=0, log=lambda _line: None)
    procs: list[Output] = []
    try:
        tb.setup()
        for side in ("robot", "edge"):           # no multicast leaves either namespace
            subprocess.run(["ip", "-n", tb.ns[side], "route", "del", "224.0.0.0/4"], check=True)
            routes = subprocess.run(["ip", "-n", tb.ns[side], "route", "show", "table", "all"], capture_output=True,
                                    text=True, check=True).stdout
            assert "224.0.0.0" not in routes and "default" not in routes
        server_at = f"{tb.ip['edge']}:{PORT}"

        def spawn(side: str, argv: list[str]) -> Output:
            procs.append(Output(subprocess.Popen(tb.wrap(argv, side), env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True)))
            return procs[-1]

        server = spawn("edge", [sys.executable, "-m", "intradp_ros.tools.discovery_server", "-i", "0", "-l",
                                tb.ip["edge"], "-p", str(PORT)])
        server.wait_for("Server is running", 60)
        edge_params = with_overrides(share_dir() / "config" / "edge.yaml",
                                     {"edge_node": {"profile_cache_dir": str(tmp_path)}}, tmp_path)
        edge = spawn("edge", [sys.executable, "-m", "intradp_ros.launcher", "edge", f"discovery_server:={server_at}",
                              f"params_file:={edge_params}", f"dds_profile:={config_file('fastdds_udp.xml')}"])
        edge.wait_for("edge_node: model", 300)
        robot_params = with_overrides(share_dir() / "config" / "robot.yaml", {
            "robot_node": {"plan": plan.spec(), "profile_cache_dir": str(tmp_path)}}, tmp_path)
        spawn("robot", [sys.executable, "-m", "intradp_ros.launcher", "robot", f"discovery_server:={server_at}",
                        f"params_file:={robot_params}", "start_camera:=false"])
        sent_before = _tx_bytes(tb, "robot")
        images = [str(find_samples() / name) for name in IMAGES]
        client_env = dict(env, ROS_DISCOVERY_SERVER=server_at,
                          FASTRTPS_DEFAULT_PROFILES_FILE=str(config_file("fastdds.xml")))
        client = subprocess.run(tb.wrap([sys.executable, str(HERE / "ns_client.py"), "/", *images], "robot"),
                                env=client_env, capture_output=True, text=True, timeout=400)
        assert client.returncode == 0, (client.stdout[-2000:] + client.stderr[-2000:] + "\n".join(
            ln for o in procs for ln in o.lines[-15:]))
        results = [json.loads(line) for line in client.stdout.splitlines() if line.startswith("{")]
        assert [r["frame_id"] for r in results] == list(IMAGES)
        for r, name in zip(results, IMAGES):
            assert r["stamp_ok"] and r["plan"] == plan.spec()
            ref = model.reference(cv2.cvtColor(load_sample(name), cv2.COLOR_BGR2RGB))
            assert [d[0] for d in r["detections"]] == [d.class_name for d in ref]
            for (_, score, cx), b in zip(r["detections"], ref):
                assert abs(score - b.score) <= 1e-4 and abs(cx - b.center_x) <= 1e-2
        assert _tx_bytes(tb, "robot") - sent_before > 100_000          # the tiles crossed the veth
    finally:
        for o in reversed(procs):
            if o.proc.poll() is None:
                o.proc.send_signal(signal.SIGINT)
        for o in reversed(procs):
            try:
                o.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                o.proc.kill()
        tb.close()
