"""`sim2real serve`: the ROS 2 node that turns depth images into velocity commands on the robot.

Subscribes a depth image and its ``sensor_msgs/CameraInfo`` (sensor-data QoS), publishes one
geometry_msgs/Twist per image, and publishes a zero Twist whenever it cannot trust its output
(see :mod:`sim2real.runtime.watchdog`). The preprocessing, the camera the model was trained for
and the meaning of each output come from the model (checked against its manifest), through
:class:`~sim2real.runtime.policy.ModelPolicy`, never from here.

Each image is mapped onto the model's field of view by the camera's intrinsics (:class:`CameraSource`:
the ``camera_*`` parameters when set, else the latest CameraInfo, else the trained field of view
with square pixels, said once in the log). An image covering less than the model's minimum
overlap along an axis is refused (zero Twist, one log line), and so is one where more than
``max_invalid_fraction`` of the pixels the model sees hold no return (too-far and too-near
readings are measurements and do not count).

In shadow mode (``shadow``) the node runs beside a driver and commands nothing: every Twist it
would publish, the watchdog's and the fail-safe's zero Twists included, goes to ``shadow_topic``,
which may not be the robot's command topic (``cmd_vel_topic``, ``/cmd_vel``) or the driver's
(``teleop_topic``) under any remapping; its agreement with the driver's commands goes to
/diagnostics (:mod:`sim2real.runtime.shadow`).

rclpy is imported only when a node is built, so the ROS-free part (:class:`DepthToTwist`,
:class:`LatencyStats`) can be used and tested without ROS.
"""

from __future__ import annotations

import collections
import gc
import json
import math
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from sim2real.contracts import actions as action_space
from sim2real.contracts.actions import (
    ACTIONS,
    ANGULAR_THRESHOLD_RADPS,
    COMMAND_MAX_AGE_S,
    FORWARD_SPEED_MPS,
    LINEAR_THRESHOLD_MPS,
    REACTION_LAG_S,
    STOP,
    TURN_RATE_RADPS,
    CommandThresholds,
    Twist,
    choose,
    twist_for,
)
from sim2real.contracts.camera import CameraError, Intrinsics
from sim2real.contracts.preprocessing import CameraMismatch, InputMapping
from sim2real.runtime.frame_rate import FrameRate, rate_warning
from sim2real.runtime.ros_image import ImageError, decode_depth
from sim2real.runtime.watchdog import FailSafe, Log

NODE_NAME = "sim2real_policy"
ROBOT_CMD_VEL = "/cmd_vel"
STAGES: tuple[str, ...] = ("convert", "preprocess", "infer", "publish", "total")


@dataclass(frozen=True)
class SafetyEnvelope:
    """The largest |linear.x| (m/s) and |angular.z| (rad/s) the node may ever publish."""

    max_linear: float
    max_angular: float

    def allows(self, twist: Twist) -> bool:
        """Finite and inside the envelope."""
        return (math.isfinite(twist.linear_x) and math.isfinite(twist.angular_z)
                and abs(twist.linear_x) <= self.max_linear and abs(twist.angular_z) <= self.max_angular)


def manifest_speeds(manifest: dict | None) -> tuple[float, float]:
    """The largest |linear.x| and |angular.z| among the Twists the model was made with.

    They come from the manifest's ``actions.twist`` (one ``[linear.x, angular.z]`` per action);
    ``None`` (a policy without a manifest) means this runtime's own action space.
    """
    twists = action_space.spec()["twist"] if manifest is None else (manifest.get("actions") or {}).get("twist")
    try:
        pairs = [(float(linear), float(angular)) for linear, angular in twists.values()]
    except (AttributeError, TypeError, ValueError):
        raise ValueError("the model's manifest records no actions.twist ([linear.x, angular.z] per action), so "
                         "its speeds are unknown: set max_linear_speed and max_angular_speed") from None
    if not pairs or not all(math.isfinite(v) for pair in pairs for v in pair):
        raise ValueError(f"the model's manifest records unusable action speeds {twists!r}")
    return max(abs(linear) for linear, _ in pairs), max(abs(angular) for _, angular in pairs)


@dataclass
class NodeParams:
    """The node's ROS parameters (names and defaults); all are read once at start-up.

    ``max_linear_speed`` / ``max_angular_speed`` bound every command (0: the speeds in the model's
    manifest); :meth:`safety_envelope` checks the speeds against them.
    """

    model_path: str = ""
    backend: str = "auto"
    image_topic: str = "/camera/depth/image_raw"
    cmd_vel_topic: str = "/cmd_vel"
    model_topic: str = "~/model"
    diagnostics_topic: str = "/diagnostics"
    forward_speed: float = FORWARD_SPEED_MPS
    turn_rate: float = TURN_RATE_RADPS
    max_linear_speed: float = 0.0
    max_angular_speed: float = 0.0
    watchdog_timeout_s: float = 0.25
    max_invalid_fraction: float = 0.5
    expected_width: int = 0
    expected_height: int = 0
    diagnostics_period_s: float = 5.0
    expected_rate_hz: float = 0.0
    camera_info_topic: str = "/camera/depth/camera_info"
    camera_width: int = 0
    camera_height: int = 0
    camera_fx: float = 0.0
    camera_fy: float = 0.0
    camera_cx: float = 0.0
    camera_cy: float = 0.0
    shadow: bool = False
    shadow_topic: str = "/sim2real/shadow/cmd_vel"
    teleop_topic: str = ROBOT_CMD_VEL
    shadow_window_s: float = 30.0
    shadow_lag_s: float = REACTION_LAG_S
    shadow_max_age_s: float = COMMAND_MAX_AGE_S
    label_angular_z: float = ANGULAR_THRESHOLD_RADPS
    label_linear_x: float = LINEAR_THRESHOLD_MPS

    @property
    def output_topic(self) -> str:
        """Where the commands go: ``shadow_topic`` in shadow mode, else ``cmd_vel_topic``."""
        return self.shadow_topic if self.shadow else self.cmd_vel_topic

    def shadow_agreement(self):
        """The shadow mode's agreement tracker (checks its parameters)."""
        from sim2real.runtime.shadow import ShadowAgreement

        return ShadowAgreement(self.shadow_window_s, self.shadow_lag_s, self.shadow_max_age_s,
                               CommandThresholds(self.label_angular_z, self.label_linear_x))

    def check_shadow_output(self, resolve=lambda name: "/" + name.lstrip("/")) -> None:
        """Refuse a shadow output that is the robot's or the driver's command topic.

        ``resolve`` turns a topic into the name the middleware uses (the node's remapping and
        namespace; by default a relative name is taken from the root).
        """
        if not self.shadow:
            return
        output = resolve(self.shadow_topic)
        robot = {resolve(self.cmd_vel_topic): "cmd_vel_topic", resolve(self.teleop_topic): "teleop_topic",
                 ROBOT_CMD_VEL: "the robot's command topic"}
        if output in robot:
            raise ValueError(f"--shadow publishes nothing the robot obeys, but its output {self.shadow_topic!r} "
                             f"resolves to {output} ({robot[output]}): set shadow_topic elsewhere "
                             f"(default {NodeParams.shadow_topic})")

    def intrinsics(self) -> Intrinsics | None:
        """The ``camera_*`` parameters as intrinsics, or None when they are not set (all zero)."""
        values = (self.camera_width, self.camera_height, self.camera_fx, self.camera_fy, self.camera_cx,
                  self.camera_cy)
        if not any(values):
            return None
        if not (self.camera_width and self.camera_height and self.camera_fx and self.camera_fy):
            raise ValueError("camera_width, camera_height, camera_fx and camera_fy must all be set (with "
                             "camera_cx, camera_cy), or none of them")
        try:
            return Intrinsics(*values)
        except CameraError as exc:
            raise ValueError(str(exc)) from None

    def validate(self) -> None:
        if not self.model_path:
            raise ValueError("no model: set --model or the model_path parameter")
        if not self.watchdog_timeout_s > 0:
            raise ValueError(f"watchdog_timeout_s must be > 0, got {self.watchdog_timeout_s}")
        if not 0.0 <= self.max_invalid_fraction <= 1.0:
            raise ValueError(f"max_invalid_fraction must be within [0, 1], got {self.max_invalid_fraction}")
        if self.expected_width < 0 or self.expected_height < 0:
            raise ValueError("expected_width and expected_height must be ≥ 0 (0 accepts any size)")
        if not self.diagnostics_period_s > 0:
            raise ValueError(f"diagnostics_period_s must be > 0, got {self.diagnostics_period_s}")
        if not self.expected_rate_hz >= 0:
            raise ValueError(f"expected_rate_hz must be ≥ 0 (0: the camera's rate is unknown), "
                             f"got {self.expected_rate_hz}")
        for name in ("image_topic", "cmd_vel_topic", "model_topic", "diagnostics_topic",
                     *(("shadow_topic", "teleop_topic") if self.shadow else ())):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        self.intrinsics()
        if self.shadow:
            self.check_shadow_output()
            self.shadow_agreement()

    def safety_envelope(self, manifest: dict | None) -> SafetyEnvelope:
        """The one check of what the node may command, against the model's ``manifest``.

        Every way a speed enters (CLI flags, ``--ros-args -p``, ``--params-file``, ``deploy
        --node-args``) ends here before the node serves: the maxima (0 = the manifest's speeds)
        and the speeds must be finite, the speeds above 0 and within the maxima.
        """
        for name in ("forward_speed", "turn_rate", "max_linear_speed", "max_angular_speed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("max_linear_speed", "max_angular_speed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0 (0: the model's own speed), got {getattr(self, name)}")
        made_linear, made_angular = manifest_speeds(manifest)
        envelope = SafetyEnvelope(float(self.max_linear_speed or made_linear),
                                  float(self.max_angular_speed or made_angular))
        for name, value, limit, unit, max_name in (
                ("forward_speed", self.forward_speed, envelope.max_linear, "m/s", "max_linear_speed"),
                ("turn_rate", self.turn_rate, envelope.max_angular, "rad/s", "max_angular_speed")):
            if not 0 < value <= limit:
                raise ValueError(f"{name} {value} {unit} is outside the safety envelope (0, {limit:g}] {unit}; "
                                 f"{max_name} raises the limit (default: the model's own speed)")
        return envelope


class LatencyStats:
    """Rolling per-stage latencies in milliseconds; ``summary()`` gives p50/p99/max over the window."""

    def __init__(self, stages: tuple[str, ...] = STAGES, window: int = 1000):
        self._samples = {stage: collections.deque(maxlen=window) for stage in stages}
        self.frames = 0

    def add(self, timings_ms: dict[str, float]) -> None:
        self.frames += 1
        for stage, value in timings_ms.items():
            if stage in self._samples:
                self._samples[stage].append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, samples in self._samples.items():
            if samples:
                values = np.fromiter(samples, dtype=float)
                p50, p99 = np.percentile(values, (50, 99))
                out[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
                              "max": round(float(values.max()), 3), "n": int(values.size)}
        return out

    def line(self) -> str:
        """One log line: ``stage p50/p99`` for every stage with samples."""
        summary = self.summary()
        parts = ", ".join(f"{stage} {s['p50']:.2f}/{s['p99']:.2f}" for stage, s in summary.items())
        window = max((s["n"] for s in summary.values()), default=0)
        return f"latency ms p50/p99 over last {window} frames: {parts or 'no frames yet'}"


class CameraSource:
    """Where an image's intrinsics come from: the explicit ``camera_*`` parameters when set, else the
    latest CameraInfo, else None (the model's trained field of view, centred, square pixels).

    An image whose size differs from the explicit intrinsics', or from the latest CameraInfo's, is
    refused: those intrinsics do not describe it. ``log(level, message)`` hears each change of
    the intrinsics in use, and a bad CameraInfo, once.
    """

    def __init__(self, explicit: Intrinsics | None, log: Log):
        self.explicit = explicit
        self.camera_info: Intrinsics | None = None
        self._log = log
        self._said: set[str] = set()

    def update(self, msg) -> None:
        """A CameraInfo arrived; an uncalibrated or malformed one is logged once and ignored."""
        try:
            self.camera_info = Intrinsics.from_camera_info(msg)
        except (CameraError, TypeError, ValueError, AttributeError) as exc:
            self._once("warn", f"ignoring CameraInfo: {str(exc).splitlines()[0]}")

    @property
    def source(self) -> str:
        return "parameters" if self.explicit else "camera_info" if self.camera_info else "assumed"

    def for_image(self, width: int, height: int) -> Intrinsics | None:
        known = self.explicit or self.camera_info
        if known is None:
            return None
        if (known.width, known.height) != (width, height):
            raise ImageError(f"the image is {width}x{height} but the camera's intrinsics ({self.source}) are for "
                             f"{known.width}x{known.height}")
        return known

    def _once(self, level: str, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self._log(level, message)

    def describe(self, mapping) -> None:
        """Log (once per camera) which intrinsics map the images and how much of the view they cover."""
        cover = f"{mapping.coverage[0]:.0%} x {mapping.coverage[1]:.0%}"
        view = f"the model's {mapping.camera.hfov_deg:.0f}°x{mapping.camera.vfov_deg:.0f}° view"
        if self.source == "assumed":
            size = f"{mapping.intrinsics.width}x{mapping.intrinsics.height}"
            self._once("warn", f"camera: no CameraInfo and no camera_* parameters: taking the {size} images to be "
                               f"{mapping.camera.hfov_deg:g}° wide, centred, square pixels (they cover {cover} "
                               f"of {view})")
        else:
            self._once("info", f"camera ({self.source}): {mapping.intrinsics.describe()} covers {cover} of {view}")


class DepthToTwist:
    """One image message → one Twist, with the fail-safe: anything untrustworthy gives ``STOP``.

    ``policy`` is a :class:`~sim2real.runtime.policy.ModelPolicy` (or anything with ``mapping``
    and ``infer``; its ``manifest``, when it has one, sets the safety envelope). ``camera``
    resolves each image's intrinsics (default: from ``params``). ``last_tie`` is True when the
    action came from an exact left/right tie. Building one checks the speeds
    (:meth:`NodeParams.safety_envelope`), and every command it returns is finite and inside the
    envelope.
    """

    def __init__(self, policy, params: NodeParams, log: Log, camera: CameraSource | None = None):
        self.policy = policy
        self.params = params
        self.envelope = params.safety_envelope(getattr(policy, "manifest", None))
        self.failsafe = FailSafe(params.watchdog_timeout_s, log)
        self.camera = camera or CameraSource(params.intrinsics(), log)
        self.last_timing_ms: dict[str, float] = {}
        self.last_action: int | None = None
        self.last_tie = False
        self.last_logits: np.ndarray | None = None
        self.last_reason: str | None = None

    def handle(self, msg) -> Twist:
        """The command for ``msg``; on a stop ``last_action`` is None and ``last_reason`` says why."""
        start = time.perf_counter()
        self.last_timing_ms, self.last_action, self.last_logits, self.last_reason = {}, None, None, None
        self.last_tie = False
        try:
            depth, mapping = self._depth(msg)
        except ImageError as exc:
            return self._refuse(f"unusable image: {exc}")
        converted = time.perf_counter()
        x, no_return = mapping(depth)
        if no_return > self.params.max_invalid_fraction:
            return self._refuse(f"unusable image: more than {self.params.max_invalid_fraction:.0%} of the pixels "
                                f"the model sees hold no return")
        prepared = time.perf_counter()
        try:
            logits = np.asarray(self.policy.infer(x[None]))
            if logits.shape != (len(ACTIONS),) or not np.all(np.isfinite(logits)):
                raise ValueError(f"model output {logits.tolist()} is not {len(ACTIONS)} finite logits")
            action, tie = choose(logits)
            twist = twist_for(action, self.params.forward_speed, self.params.turn_rate)
            if not self.envelope.allows(twist):
                raise ValueError(f"{twist} is outside the safety envelope {self.envelope}")
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            return self._refuse(f"inference failed: {type(exc).__name__}: {detail}")
        inferred = time.perf_counter()
        self.failsafe.valid()
        self.last_action, self.last_logits, self.last_tie = action, logits, tie
        self.last_timing_ms = {"convert": (converted - start) * 1e3, "preprocess": (prepared - converted) * 1e3,
                               "infer": (inferred - prepared) * 1e3}
        return twist

    def _refuse(self, reason: str) -> Twist:
        self.last_reason = reason
        self.failsafe.fault(reason)
        return STOP

    def _depth(self, msg) -> tuple[np.ndarray, InputMapping]:
        depth = decode_depth(msg)
        height, width = depth.shape
        p = self.params
        if (p.expected_width and width != p.expected_width) or (p.expected_height and height != p.expected_height):
            raise ImageError(f"size {width}x{height} differs from the expected "
                             f"{p.expected_width or 'any'}x{p.expected_height or 'any'}")
        mapping = self.policy.mapping(self.camera.for_image(width, height), width, height)
        self.camera.describe(mapping)
        try:
            mapping.check()
        except CameraMismatch as exc:
            raise ImageError(str(exc)) from None
        return depth, mapping


def _declare(node, defaults: NodeParams, overrides: dict) -> NodeParams:
    """Declare every NodeParams field as a read-only ROS parameter; return the values in force."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterException

    values = {}
    for field in fields(NodeParams):
        default = overrides.get(field.name, getattr(defaults, field.name))
        try:
            values[field.name] = node.declare_parameter(field.name, default, ParameterDescriptor(read_only=True)).value
        except ParameterException as exc:
            raise ValueError(f"parameter {field.name}: {exc}") from None
    return NodeParams(**values)


class PolicyNode:
    """The rclpy node: subscriptions, publishers, watchdog and diagnostics timers."""

    def __init__(self, context=None, overrides: dict | None = None, policy=None):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist as TwistMsg
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from sim2real.runtime.policy import ModelPolicy

        self.node = Node(NODE_NAME, context=context)
        self.logger = self.node.get_logger()
        self.params = _declare(self.node, NodeParams(), overrides or {})
        if (overrides or {}).get("shadow") and not self.params.shadow:
            raise ValueError("--shadow was given but a parameter (a --params-file or -p) sets shadow false: "
                             "the node would command the robot; remove that setting")
        self.params.validate()
        self.params.check_shadow_output(self.node.resolve_topic_name)
        self.shadow = self.params.shadow_agreement() if self.params.shadow else None
        self.policy = policy or ModelPolicy(self.params.model_path, backend=self.params.backend)
        self.pipeline = DepthToTwist(self.policy, self.params, self._log)
        self.stats = LatencyStats()
        self.frame_rate = FrameRate(window_s=max(self.params.diagnostics_period_s, 2.0))
        self._rate_warning: str | None = None
        self._frames_logged = 0
        self._twist_cls = TwistMsg
        self._diag_cls = DiagnosticArray
        self._stop_msg = TwistMsg()

        self.cmd_pub = self.node.create_publisher(TwistMsg, self.params.output_topic, 10)
        self.diag_pub = self.node.create_publisher(DiagnosticArray, self.params.diagnostics_topic, 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.model_pub = self.node.create_publisher(String, self.params.model_topic, latched)
        self.model_info = {
            "sha256": self.policy.sha256, "model": str(self.params.model_path),
            "backend": getattr(getattr(self.policy, "engine", None), "name", self.params.backend),
            "preprocessing": self.policy.spec.to_dict(), "camera": self.policy.camera.to_dict(),
            "actions": list(ACTIONS),
        }
        self.subscription = self.node.create_subscription(Image, self.params.image_topic, self._on_image,
                                                          qos_profile_sensor_data)
        self.ties = 0
        self.camera_info_subscription = None
        if self.params.camera_info_topic:
            self.camera_info_subscription = self.node.create_subscription(
                CameraInfo, self.params.camera_info_topic, self.pipeline.camera.update, qos_profile_sensor_data)
        self.teleop_subscription = None
        if self.shadow is not None:
            # best effort: hears reliable and best-effort drivers alike
            self.teleop_subscription = self.node.create_subscription(TwistMsg, self.params.teleop_topic,
                                                                     self._on_teleop, qos_profile_sensor_data)
        tick = min(self.params.watchdog_timeout_s / 4.0, 0.05)
        self.watchdog_timer = self.node.create_timer(tick, self._on_watchdog)
        self.diag_timer = self.node.create_timer(self.params.diagnostics_period_s, self._on_diagnostics)
        self.logger.info(
            f"serving model {self.model_info['model']} sha256 {self.policy.sha256} on backend "
            f"{self.model_info['backend']}: {self.subscription.topic_name} → {self.cmd_pub.topic_name} "
            f"(watchdog {self.params.watchdog_timeout_s:g} s, model info latched on {self.model_pub.topic_name})")
        if self.teleop_subscription is not None:
            self.logger.info(f"shadow mode: commanding nothing; what the policy would command goes to "
                             f"{self.cmd_pub.topic_name}, its agreement with the driver's "
                             f"{self.teleop_subscription.topic_name} to {self.diag_pub.topic_name}")
        self.model_pub.publish(String(data=json.dumps(self.model_info, sort_keys=True)))
        if getattr(self.policy, "isa_note", None):
            self.logger.warning(self.policy.isa_note)

    def _log(self, level: str, message: str) -> None:
        if level == "warn":
            self.logger.warning(message)
        else:
            self.logger.info(message)

    def _on_teleop(self, msg) -> None:
        self.shadow.teleop(time.monotonic(), float(msg.linear.x), float(msg.angular.z))

    def _on_image(self, msg) -> None:
        received = time.monotonic()
        self.frame_rate.tick(received)
        start = time.perf_counter()
        try:
            twist = self.pipeline.handle(msg)
        except Exception as exc:
            self.pipeline.failsafe.fault(f"image callback failed: {type(exc).__name__}: {exc}")
            twist = STOP
        self.ties += self.pipeline.last_tie
        if self.shadow is not None:
            self.shadow.policy(received, self.pipeline.last_action)
        out = self._twist_cls()
        out.linear.x, out.angular.z = float(twist.linear_x), float(twist.angular_z)
        before_publish = time.perf_counter()
        self.cmd_pub.publish(out)
        end = time.perf_counter()
        if self.pipeline.last_timing_ms:
            self.stats.add({**self.pipeline.last_timing_ms, "publish": (end - before_publish) * 1e3,
                            "total": (end - start) * 1e3})

    def _on_watchdog(self) -> None:
        if self.pipeline.failsafe.stale():
            self.cmd_pub.publish(self._stop_msg)

    def stop_robot(self) -> None:
        """Publish one zero Twist (used on shutdown)."""
        self.cmd_pub.publish(self._stop_msg)

    def _on_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        failsafe = self.pipeline.failsafe
        summary = self.stats.summary()
        rate = self.frame_rate.rate(time.monotonic())
        low_rate = rate_warning(rate, self.params.expected_rate_hz)
        self._report_rate(low_rate, rate)
        status = DiagnosticStatus(name=f"{NODE_NAME}: depth policy", hardware_id=self.policy.sha256[:12])
        problems = ([f"stopped: {failsafe.reason}"] if failsafe.stopped else []) + ([low_rate] if low_rate else [])
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = "; ".join(problems) or ("shadowing" if self.shadow else "serving")
        values = {"model_sha256": self.policy.sha256, "backend": self.model_info["backend"],
                  "frames": self.stats.frames, "frames_received": self.frame_rate.count,
                  "image_rate_hz": "" if rate is None else round(rate, 2),
                  "expected_rate_hz": self.params.expected_rate_hz, "stop_episodes": failsafe.stops,
                  "left_right_ties": self.ties, "camera_intrinsics": self.pipeline.camera.source}
        for stage, figures in summary.items():
            values[f"{stage}_ms_p50"] = figures["p50"]
            values[f"{stage}_ms_p99"] = figures["p99"]
        status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
        statuses = [status] + ([self._shadow_status()] if self.shadow is not None else [])
        array = self._diag_cls(status=statuses)
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.diag_pub.publish(array)
        if self.stats.frames != self._frames_logged:
            self._frames_logged = self.stats.frames
            self.logger.info(self.stats.line())

    def _shadow_status(self):
        """Shadow mode's agreement with the driver over the window, as a DiagnosticStatus."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        figures = self.shadow.summary(time.monotonic())
        status = DiagnosticStatus(name=f"{NODE_NAME}: shadow agreement", hardware_id=self.policy.sha256[:12],
                                  level=DiagnosticStatus.OK)
        if figures["agreement"] is None:
            status.message = f"no frame compared in the last {figures['window_s']:g} s"
            if not self.shadow.teleop_messages:
                status.level = DiagnosticStatus.WARN
                status.message += f" (nothing heard on {self.teleop_subscription.topic_name})"
        else:
            status.message = (f"agreement {figures['agreement']:.2f} over {figures['compared']} frames "
                              f"in the last {figures['window_s']:g} s")
        values = {"output_topic": self.cmd_pub.topic_name, "teleop_topic": self.teleop_subscription.topic_name,
                  "lag_s": self.shadow.lag_s, **{k: v for k, v in figures.items() if k != "driver_classes"},
                  **{f"driver_{name}": count for name, count in figures["driver_classes"].items()}}
        status.values = [KeyValue(key=key, value="" if value is None else str(value)) for key, value in values.items()]
        return status

    def _report_rate(self, warning: str | None, rate: float | None) -> None:
        """Log once when frames start arriving well below the camera's rate, once when they recover."""
        if warning and not self._rate_warning:
            self.logger.warning(warning)
        elif self._rate_warning and not warning and rate is not None:
            self.logger.info(f"depth images arrive at {rate:.1f} Hz again")
        self._rate_warning = warning

    def destroy(self) -> None:
        self.node.destroy_node()


def make_executor(context):
    """rclpy's EventsExecutor where this rclpy has it (less overhead per message), else the default one."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def serve(overrides: dict | None = None, ros_args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; publish a zero Twist before leaving.

    ``overrides`` replace parameter defaults (``--ros-args -p`` and ``--params-file`` still win);
    ``ros_args`` are the arguments after ``--ros-args`` (remapping ``-r``, parameters ``-p``).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from sim2real.runtime.middleware import use_large_image_profile

    use_large_image_profile()
    model_path = (overrides or {}).get("model_path")
    if model_path and not Path(model_path).exists():
        raise FileNotFoundError(f"model not found: {model_path}")
    context = rclpy.Context()
    args = ["sim2real-serve", *(["--ros-args", *ros_args] if ros_args else [])]
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:
        raise ValueError(f"ROS could not start with arguments {args[1:]}: {exc}") from None
    stopping = []
    previous = {sig: signal.signal(sig, lambda *_: stopping.append(True)) for sig in (signal.SIGINT, signal.SIGTERM)}
    policy_node = None
    try:
        policy_node = PolicyNode(context=context, overrides=overrides)
        gc.collect()
        gc.freeze()
        executor = make_executor(context)
        executor.add_node(policy_node.node)
        while not stopping and context.ok():
            executor.spin_once(timeout_sec=0.2)
        policy_node.stop_robot()
        policy_node.logger.info("shutting down: published a zero Twist")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if policy_node is not None:
            policy_node.destroy()
        context.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sim2real.runtime.node --ros-args -p model_path:=...``: the node without the CLI."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args") + 1:] if "--ros-args" in argv else []
    return serve(ros_args=ros_args)


if __name__ == "__main__":
    raise SystemExit(main())
