"""Plain-Python install of intradp_ros (``pip install .``), without ROS message generation.

Everything (metadata, packages, the console_scripts list) lives in setup.cfg, which the colcon
build (CMakeLists.txt) reads too, so both installs expose the same executables. A pip install
gives the ROS-free engine and the entry points; the generated ``intradp_ros.msg`` module only
comes from ``colcon build`` (see ``./intradp setup``).
"""

from setuptools import setup

setup()
