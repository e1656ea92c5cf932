"""A processing node's file: a long-lived headless process runs a set of cameras into the shared database.

Its cameras and settings come from one TOML file (``[[cameras]]`` tables beside the usual settings sections); its
presence in the database is :class:`~reid_desktop.core.store.node_health.NodeHealth`'s.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_desktop.core import config as config_mod
from reid_desktop.core.capture.sources import SourceSpec


@dataclass(frozen=True)
class NodeFile:
    """What a node runs: its name, its cameras and the pipeline's settings."""

    name: str
    cameras: list[SourceSpec]
    config: config_mod.PipelineConfig


def load_node_file(path: Path, overrides: dict[str, Any] | None = None) -> NodeFile:
    """Read ``[node]``, ``[[cameras]]`` and the settings sections; :class:`ConfigError` names what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise config_mod.ConfigError(f"node file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise config_mod.ConfigError(f"node file {path} is not valid TOML: {exc}") from None
    node = data.pop("node", {})
    if not isinstance(node, dict):
        raise config_mod.ConfigError(f"node file {path}: [node] must be a table (name = \"...\"), not {node!r}")
    if set(node) - {"name"}:
        raise config_mod.ConfigError(f"node file {path}: [node] knows only 'name'; unknown keys: "
                                     f"{', '.join(sorted(set(node) - {'name'}))}")
    if not isinstance(node.get("name", ""), str):
        raise config_mod.ConfigError(f"node file {path}: [node] name must be text, not {node['name']!r}")
    cameras = data.pop("cameras", [])
    if not isinstance(cameras, list) or not cameras:
        raise config_mod.ConfigError(f"node file {path} names no cameras: add [[cameras]] tables with name and uri")
    specs = []
    for number, camera in enumerate(cameras, start=1):
        if not isinstance(camera, dict):
            raise config_mod.ConfigError(f"camera {number} of {path} must be a [[cameras]] table with name and uri, "
                                         f"not {camera!r}")
        unknown = set(camera) - {"name", "uri", "region", "loop", "realtime", "analysis_fps"}
        if unknown or "uri" not in camera or "name" not in camera:
            raise config_mod.ConfigError(f"camera {number} of {path}: needs name and uri" +
                                         (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""))
        region = camera.get("region")
        try:
            specs.append(SourceSpec(str(camera["uri"]), str(camera["name"]),
                                    tuple(float(v) for v in region) if region else None,  # type: ignore[arg-type]
                                    bool(camera.get("loop", False)), bool(camera.get("realtime", False)),
                                    camera.get("analysis_fps")))
        except (TypeError, ValueError) as exc:
            raise config_mod.ConfigError(f"camera {camera['name']} of {path}: {exc}") from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise config_mod.ConfigError(f"node file {path}: two cameras share a name")
    config = config_mod.apply(config_mod.PipelineConfig(), data)
    if overrides:
        config = config_mod.apply(config, overrides)
    return NodeFile(str(node.get("name") or socket.gethostname()), specs, config)


