"""The engine, models, vision and runtimes are plain PyTorch: they import, and their tests pass, with every ROS
module made unimportable (as on a machine without ROS)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROS_FREE_TESTS = ["test_codec.py", "test_planner.py", "test_engine_exactness.py::test_exotic_local_operators",
                  "test_detection_postprocess.py", "test_image_convert.py", "test_runtime_pipeline.py"]

_BLOCKER = r"""
import importlib.abc, sys
ROS = ("rclpy", "rosidl", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs",
       "ament_index_python", "launch", "launch_ros", "intradp_ros.msg", "rpyutils")
class NoROS(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == r or name.startswith(r + ".") or name.startswith(r + "_") for r in ROS):
            raise ImportError(f"{name} blocked: this process must not need ROS")
sys.meta_path.insert(0, NoROS())
"""


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    # only the checkout and the blocker on the path: not the colcon install, not the ROS underlay
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "INTRADP_ROOT": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_core_imports_without_ros(tmp_path):
    r = _run("import rclpy", tmp_path)
    assert r.returncode != 0 and "blocked" in r.stderr          # the blocker works
    r = _run("import intradp_ros.engine.executor, intradp_ros.engine.search, intradp_ros.engine.profiler, "
             "intradp_ros.runtime, intradp_ros.tasks, intradp_ros.models.yolov3_tiny, intradp_ros.vision.detection, "
             "intradp_ros.vision.image_convert, intradp_ros.topology, intradp_ros.tools.plan_report", tmp_path)
    assert r.returncode == 0, r.stderr


def test_core_tests_pass_without_ros(tmp_path):
    args = [str(ROOT / "test" / t) for t in ROS_FREE_TESTS] + ["-q", "-p", "no:cacheprovider", "-x"]
    r = _run(f"import sys, pytest; sys.exit(pytest.main({args!r}))", tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "error" not in r.stdout.splitlines()[-1]
