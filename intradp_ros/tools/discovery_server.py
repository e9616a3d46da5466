"""A Fast DDS Discovery Server from the pip-installed ROS 2 wheels: `./intradp discovery-server [options]`.

    ./intradp discovery-server -i 0 -l 10.0.0.2 -p 11811     # on the edge; then, on every host:
    ./intradp launch edge discovery_server:=10.0.0.2:11811    # (robot: the same argument)

The Jazzy wheels ship the server (``fast-discovery-server`` in the environment's bin/), but its libraries live in
the wheels' own folders, which the dynamic loader does not search: this finds them and execs the server with
them on LD_LIBRARY_PATH. On a ROS 2 install, ``fastdds discovery -i 0 -l <address> -p 11811`` is the same server.
Options are the server's own (``-h``).
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

__all__ = ["server_command", "main"]


def server_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The server's argv and environment; FileNotFoundError when the wheels' server is not installed."""
    exe = shutil.which("fast-discovery-server") or str(Path(sys.prefix) / "bin" / "fast-discovery-server")
    if not os.access(exe, os.X_OK):
        raise FileNotFoundError("fast-discovery-server not found: run ./intradp setup (it installs the ROS 2 wheels)")
    site = Path(sysconfig.get_paths()["purelib"])
    libs = [str(Path(sys.prefix) / "lib"), *sorted(str(p) for p in site.glob("ros_fastrtps*.libs"))]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return [exe, *args], env


def main(argv: list[str] | None = None) -> int:
    try:
        cmd, env = server_command(sys.argv[1:] if argv is None else argv)
    except FileNotFoundError as e:
        print(f"intradp discovery-server: {e}", file=sys.stderr)
        return 2
    os.execvpe(cmd[0], cmd, env)
    return 0   # not reached


if __name__ == "__main__":
    sys.exit(main())
