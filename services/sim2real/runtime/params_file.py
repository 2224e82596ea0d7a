"""The node's ROS 2 parameters file (``--ros-args --params-file``), read without ROS.

``sim2real replay`` takes the same file as ``sim2real serve``, so a replay runs with the robot's
parameters. The shipped file is ``config/node.yaml`` (:data:`sim2real.runtime.middleware.NODE_PARAMS`).
The file follows ROS 2's layout; the node's section is the one whose key ends in the node's name
(``sim2real_policy``, ``/sim2real_policy``, ``/**/sim2real_policy``) or is the wildcard ``/**``.
Values are checked as ROS checks them: a floating-point parameter needs a float literal.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from sim2real.runtime.node import NODE_NAME, NodeParams

_TYPES = {field.name: type(getattr(NodeParams(), field.name)) for field in fields(NodeParams)}


def _applies(key: str) -> bool:
    return key.strip("/") == "**" or key.rstrip("/").split("/")[-1] == NODE_NAME


def read_params_file(path: str | Path) -> dict:
    """The node's parameters set in ``path`` (later sections win), checked against :class:`NodeParams`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"parameters file {path} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ValueError(f"parameters file {path}: expected '<node>: {{ros__parameters: {{...}}}}' at the top")
    values: dict = {}
    for key, section in document.items():
        if not _applies(str(key)):
            continue
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ValueError(f"parameters file {path}: section '{key}' has no ros__parameters mapping")
        for name, value in params.items():
            expected = _TYPES.get(name)
            if expected is None:
                raise ValueError(f"parameters file {path}: unknown parameter '{name}' for {NODE_NAME} "
                                 f"(known: {', '.join(sorted(_TYPES))})")
            if type(value) is not expected:
                raise ValueError(f"parameters file {path}: {name} must be a {expected.__name__} literal, "
                                 f"got {value!r}")
            values[name] = value
    return values
