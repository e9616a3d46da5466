"""Parameter files with a few values changed: how the demo, the benchmark and the tests configure nodes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

__all__ = ["with_overrides"]


def with_overrides(base: str | Path, overrides: dict[str, dict], directory: str | Path | None = None) -> Path:
    """A copy of the YAML parameter file ``base`` with ``{node name: {parameter: value}}`` merged in.

    Values go into the file's existing entry for the node (``/**/name`` or ``/name``), else a new ``/**/name``.
    """
    doc = yaml.safe_load(Path(base).read_text()) or {}
    for node, params in overrides.items():
        key = next((k for k in doc if k.rsplit("/", 1)[-1] == node), f"/**/{node}")
        doc.setdefault(key, {}).setdefault("ros__parameters", {}).update(params)
    f = tempfile.NamedTemporaryFile("w", suffix=f"-{Path(base).name}", delete=False, dir=directory)
    with f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return Path(f.name)
