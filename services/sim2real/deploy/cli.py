"""The `deploy` verb, added to the main CLI by ``register(verbs)``.

Standalone too: ``python -m sim2real.deploy.cli deploy ...`` (same flags, same exit codes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sim2real.deploy.deploy import DEFAULT_IMAGE, PULL_POLICIES, RESTART_POLICIES

DEFAULT_MODEL = os.path.join("latest", "model", "model.int8.onnx")


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (got {text!r})")
    return key, value


def resolve_model(model: str, artifacts: str) -> Path:
    """``model`` as given when it exists or is absolute, else relative to the artifacts root."""
    path = Path(model)
    if path.is_absolute() or path.exists():
        return path
    return Path(artifacts) / path


def config_from_args(args: argparse.Namespace):
    from sim2real.deploy.deploy import DeployConfig

    return DeployConfig(model=resolve_model(args.model, args.artifacts), host=args.host, image=args.image,
                        name=args.name, load=Path(args.load) if args.load else None, pull=args.pull,
                        runtime=args.runtime or None, restart=args.restart, volume=args.volume,
                        env=dict(args.env), node_args=list(args.node_args), wait_s=args.wait)


def _deploy(args: argparse.Namespace) -> int:
    from sim2real.deploy.deploy import deploy

    config = config_from_args(args)
    result = deploy(config, log=lambda message: print(f"[sim2real deploy] {message}", file=sys.stderr, flush=True))
    print(json.dumps(result))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `deploy` subparser to ``verbs``."""
    p = verbs.add_parser(
        "deploy", help="ship the runtime image and a model to a robot's Docker engine; (re)start the node",
        description="Over the Docker API: load (--load) or pull the jetson-runtime image on the device, copy "
                    "the model and its manifest into a volume there, and replace the node container "
                    "(sim2real serve) with host networking, the NVIDIA runtime and a restart policy. The "
                    "previous container comes back if the new one does not stay up.")
    p.add_argument("--host", default=os.environ.get("DOCKER_HOST"),
                   help="the device's Docker engine: ssh://user@robot, unix:///path or tcp://host:port "
                        "(default $DOCKER_HOST, else the local engine)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="runtime image (default %(default)s)")
    p.add_argument("--artifacts", default=os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"),
                   help="artifacts root that a relative --model is looked up in (default $SIM2REAL_ARTIFACTS or artifacts)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="ONNX model with its manifest beside it (default <artifacts>/%(default)s)")
    p.add_argument("--name", default="sim2real-runtime", help="node container name (default %(default)s)")
    p.add_argument("--load", metavar="FILE", help="a `docker save` tarball to load on the device instead of pulling")
    p.add_argument("--pull", choices=PULL_POLICIES, default="missing",
                   help="without --load: pull the image always, when missing (default), or never")
    p.add_argument("--runtime", default="nvidia",
                   help="container runtime (default %(default)s; '' for the engine's default)")
    p.add_argument("--restart", choices=RESTART_POLICIES, default="unless-stopped",
                   help="restart policy (default %(default)s)")
    p.add_argument("--volume", default="sim2real-models", help="device volume that holds the models (default %(default)s)")
    p.add_argument("--env", type=_env_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the node, e.g. --env ROS_DOMAIN_ID=7 (repeatable)")
    p.add_argument("--wait", type=float, default=5.0,
                   help="seconds the new node must stay up before the old one is removed (default %(default)s)")
    p.add_argument("--node-args", nargs=argparse.REMAINDER, default=[],
                   help="the rest goes to `sim2real serve`, e.g. --node-args --forward-speed 0.3")
    p.set_defaults(func=_deploy)


def main(argv: list[str] | None = None) -> int:
    """``python -m sim2real.deploy.cli ...``: the same as ``sim2real ...`` (one parser, one error policy)."""
    from sim2real.cli import main as sim2real_main

    return sim2real_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
