"""Files the launchers derive from the configured ones (a restricted DDS profile, a namespaced QoS file)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_derived"]


def write_derived(text: str, stem: str, suffix: str) -> str:
    """``text`` as a file under $ROS_HOME/intradp (else the temp directory), named by its content, so launches
    that derive the same file share it and nothing is rewritten while a node reads it."""
    home = Path(os.environ.get("ROS_HOME") or Path.home() / ".ros") / "intradp"
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError:
        home = Path(tempfile.gettempdir())
    path = home / f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:12]}{suffix}"
    if not path.is_file():
        path.write_text(text)
    return str(path)
