"""The pieces of :mod:`intradp_ros.launcher` (the pip-only replacement of ``ros2 launch``).

- :mod:`.arguments`: the one table of launch arguments (shared with ``launch/*.launch.py``) and their resolution;
- :mod:`.commands`: the nodes to start for a host and their ``--ros-args`` command lines;
- :mod:`.supervisor`: :class:`~.supervisor.Launch`, the running child processes, their output and their stopping.

:mod:`intradp_ros.launcher` re-exports all of it and adds ``start`` and the command line.
"""
