"""The robot-side verbs: `sim2real serve` (the ROS 2 node) and `sim2real replay` (a bag, offline).

``register(verbs)`` adds both to the main CLI's sub-parsers. Handlers import their service lazily
and return an exit code; bad input raises ValueError / FileNotFoundError (one line, exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from pathlib import Path

import yaml

_SERVE_FLAGS = {  # CLI flag dest → ROS parameter name
    "model": "model_path", "backend": "backend", "image_topic": "image_topic",
    "cmd_vel_topic": "cmd_vel_topic", "forward_speed": "forward_speed", "turn_rate": "turn_rate",
    "max_linear_speed": "max_linear_speed", "max_angular_speed": "max_angular_speed",
    "watchdog_timeout": "watchdog_timeout_s", "max_invalid_fraction": "max_invalid_fraction",
    "diagnostics_period": "diagnostics_period_s", "expected_rate": "expected_rate_hz",
    "camera_info_topic": "camera_info_topic", "shadow": "shadow", "shadow_topic": "shadow_topic",
    "teleop_topic": "teleop_topic", "shadow_window": "shadow_window_s", "shadow_lag": "shadow_lag_s",
}
# replay flag dest → node parameter (flags win over --params-file, which wins over the defaults)
_REPLAY_FLAGS = {"backend": "backend", "max_invalid_fraction": "max_invalid_fraction",
                 "camera_info_topic": "camera_info_topic"}
_INTRINSICS = ("camera_width", "camera_height", "camera_fx", "camera_fy", "camera_cx", "camera_cy")


def _intrinsics(text: str | None) -> dict:
    """``--intrinsics W,H,FX,FY,CX,CY`` as the node's camera_* parameters ({} when not given)."""
    if text is None:
        return {}
    from sim2real.contracts.camera import Intrinsics

    camera = Intrinsics.from_values(text)
    return dict(zip(_INTRINSICS, (camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)))


def _default_model() -> str:
    return os.path.join(os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"), "latest", "model", "model.int8.onnx")


def _node_threads() -> None:
    """The node's thread defaults, for ``serve`` and for ``replay`` (whose timings are then the node's).

    One image is in flight at a time and the robot's CPU is shared with other nodes: one BLAS and one
    ONNX Runtime thread avoid spin-waiting threads that cost far more at p99 than they gain at p50.
    Both are environment variables, so a deployment can still choose otherwise. Set before numpy and
    ONNX Runtime are imported.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("SIM2REAL_ORT_THREADS", "1")


def _serve(args: argparse.Namespace) -> int:
    _node_threads()
    from sim2real.runtime.node import serve

    overrides = {param: getattr(args, dest) for dest, param in _SERVE_FLAGS.items()
                 if getattr(args, dest) is not None}
    overrides.update(_intrinsics(args.intrinsics))
    if "model_path" in overrides:
        overrides["model_path"] = str(Path(overrides["model_path"]).resolve())
    return serve(overrides=overrides, ros_args=args.ros_args)


def _replay(args: argparse.Namespace) -> int:
    _node_threads()
    from sim2real.runtime.node import NodeParams
    from sim2real.runtime.params_file import read_params_file

    values = read_params_file(args.params_file) if args.params_file else {}
    values.update({param: getattr(args, dest) for dest, param in _REPLAY_FLAGS.items()
                   if getattr(args, dest) is not None})
    values.update(_intrinsics(args.intrinsics))
    values["model_path"] = args.model
    params = NodeParams(**values)
    params.validate()
    from sim2real.runtime.replay import replay

    summary = replay(Path(args.bag), Path(args.model), topic=args.topic, backend=params.backend,
                     out=Path(args.out) if args.out else None,
                     out_bag=Path(args.out_bag) if args.out_bag else None,
                     out_storage=args.out_storage, params=params)
    print(json.dumps(summary))
    return 0


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="ONNX model (or TensorRT .engine) with its manifest beside it "
                                   "(or the model_path parameter)")
    p.add_argument("--backend", help="inference backend: auto, onnxruntime, tensorrt (default auto)")
    p.add_argument("--image-topic", help="depth image topic (default /camera/depth/image_raw)")
    p.add_argument("--cmd-vel-topic", help="velocity command topic (default /cmd_vel)")
    p.add_argument("--forward-speed", type=float, help="m/s for 'forward' (default 0.5)")
    p.add_argument("--turn-rate", type=float, help="rad/s for 'left' / 'right' (default 0.5)")
    p.add_argument("--max-linear-speed", type=float,
                   help="no command exceeds this |linear.x| in m/s (default: the model's manifest speed)")
    p.add_argument("--max-angular-speed", type=float,
                   help="no command exceeds this |angular.z| in rad/s (default: the model's manifest speed)")
    p.add_argument("--watchdog-timeout", type=float,
                   help="seconds without a valid image before a zero Twist (default 0.25)")
    p.add_argument("--max-invalid-fraction", type=float,
                   help="refuse an image where more of the pixels the model sees hold no return (0, NaN) "
                        "than this (default 0.5; too-far and too-near readings do not count)")
    p.add_argument("--diagnostics-period", type=float,
                   help="seconds between latency reports on /diagnostics and in the log (default 5)")
    p.add_argument("--expected-rate", type=float,
                   help="the camera's frame rate in Hz: /diagnostics warns when images arrive well below it "
                        "(default 0: unknown)")
    p.add_argument("--camera-info-topic",
                   help="the camera's sensor_msgs/CameraInfo: its intrinsics map each image onto the model's "
                        "field of view (default /camera/depth/camera_info; empty: none)")
    p.add_argument("--intrinsics", metavar="W,H,FX,FY,CX,CY",
                   help="the camera's intrinsics in pixels (CameraInfo convention), used instead of CameraInfo")
    p.add_argument("--shadow", action="store_true", default=None,
                   help="shadow mode, beside a driver: command nothing; what the policy would command (zero "
                        "Twists included) goes to --shadow-topic, its agreement with the driver's commands to "
                        "/diagnostics. Refused when the output would be the robot's or the driver's topic")
    p.add_argument("--shadow-topic", help="shadow mode's output (default /sim2real/shadow/cmd_vel)")
    p.add_argument("--teleop-topic", help="the driver's commands, compared in shadow mode (default /cmd_vel)")
    p.add_argument("--shadow-window", type=float,
                   help="seconds of decisions the shadow agreement covers (default 30)")
    p.add_argument("--shadow-lag", type=float,
                   help="the driver's reaction lag in seconds: each image is compared with the command in "
                        "effect this long after it (default 0.3)")
    p.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[],
                   help="the rest goes to ROS, e.g. --ros-args -r /cmd_vel:=/robot/cmd_vel")


def serve_overrides(argv: list[str]) -> dict:
    """The node parameters that ``sim2real serve ARGV`` sets, from its flags and ``--ros-args -p name:=value``.

    For checks before the node exists (``sim2real deploy --node-args``); a ``--params-file`` is
    read by the node itself, where it goes through the same checks at start.
    """
    from sim2real.runtime.node import NodeParams

    parser = argparse.ArgumentParser(prog="sim2real serve", exit_on_error=False, add_help=False)
    _add_serve_arguments(parser)
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ValueError(f"node arguments: {exc}") from None
    if unknown:
        raise ValueError(f"node arguments: unrecognized {' '.join(unknown)}")
    overrides = {param: getattr(args, dest) for dest, param in _SERVE_FLAGS.items() if getattr(args, dest) is not None}
    overrides.update(_intrinsics(args.intrinsics))
    names = {field.name for field in fields(NodeParams)}
    ros = list(args.ros_args)
    for flag, assignment in zip(ros, ros[1:]):
        name, sep, text = assignment.partition(":=")
        if flag in ("-p", "--param") and sep and name in names:
            overrides[name] = _ros_value(text)
    return overrides


def _ros_value(text: str) -> object:
    """A ``-p`` value as ROS reads it: YAML, where ``nan``, ``inf`` and ``1e9`` are numbers too."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``replay`` to the sub-parsers of the main ``sim2real`` parser."""
    p = verbs.add_parser(
        "serve", help="run the policy as a ROS 2 node: depth image in, /cmd_vel out (--shadow: beside a driver)",
        description="ROS 2 node: subscribes a depth image (32FC1 m or 16UC1 mm, sensor-data QoS) and "
                    "publishes a geometry_msgs/Twist per image; zero Twist on a stale camera, an unusable "
                    "image or an inference error. Flags set the node's parameters; anything after "
                    "--ros-args goes to ROS (remapping -r, parameters -p, --params-file).")
    _add_serve_arguments(p)
    p.set_defaults(func=_serve)

    p = verbs.add_parser("replay", help="run the policy over a recorded ROS 2 bag (MCAP or sqlite3)",
                         description="Replay the depth images of a rosbag2 (folder, .mcap or .db3) through "
                                     "the node's pipeline; write one JSON line per image with the action "
                                     "and per-stage timings, and print a summary.")
    p.add_argument("--bag", required=True, help="rosbag2 folder, or a single .mcap / .db3 file")
    p.add_argument("--model", default=_default_model(),
                   help="model with its manifest (default %(default)s)")
    p.add_argument("--topic", default="/camera/depth/image_raw", help="image topic (default %(default)s)")
    p.add_argument("--backend", help="inference backend (default auto)")
    p.add_argument("--params-file",
                   help="the node's ROS 2 parameters file (as serve's --ros-args --params-file): replay "
                        "with the robot's parameters; flags given here win over it")
    p.add_argument("--out", help="JSON lines output (default <bag>.actions.jsonl beside the bag)")
    p.add_argument("--out-bag", help="also write the commands as geometry_msgs/Twist to this new bag")
    p.add_argument("--out-storage", default="mcap", choices=("mcap", "sqlite3"),
                   help="storage of --out-bag (default %(default)s)")
    p.add_argument("--max-invalid-fraction", type=float,
                   help="refuse an image with more no-return pixels than this (default 0.5)")
    p.add_argument("--camera-info-topic",
                   help="CameraInfo topic in the bag: the latest one before each image gives its intrinsics "
                        "(default /camera/depth/camera_info)")
    p.add_argument("--intrinsics", metavar="W,H,FX,FY,CX,CY",
                   help="the camera's intrinsics in pixels (CameraInfo convention), used instead of the bag's "
                        "CameraInfo; without either, the model's trained field of view, square pixels")
    p.set_defaults(func=_replay)


def main(argv: list[str] | None = None) -> int:
    """``python -m sim2real.runtime.cli ...``: the same as ``sim2real ...`` (one parser, one error policy)."""
    from sim2real.cli import main as sim2real_main

    return sim2real_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
