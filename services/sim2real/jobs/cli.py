"""The queue's verbs, `worker` and `submit`, added to the main CLI by ``register(verbs)``.

Standalone too: ``python -m sim2real.jobs.cli worker|submit ...`` (same flags, same exit codes).

Where Redis is, and its password: ``--redis URL`` or ``$SIM2REAL_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``); the password from ``--redis-password-file FILE``,
``$SIM2REAL_REDIS_PASSWORD_FILE`` or ``$SIM2REAL_REDIS_PASSWORD``, so that it is not on a command
line (``ps`` shows those to every user). A password inside a ``--redis`` URL still works, with a
warning. Neither ``--help`` nor any log line or error shows a password.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from sim2real.contracts.evaluation import POLICY_TRANSPORTS
from sim2real.jobs import DEFAULT_REDIS_URL

PASSWORD_VARIABLE = "SIM2REAL_REDIS_PASSWORD"
PASSWORD_FILE_VARIABLE = "SIM2REAL_REDIS_PASSWORD_FILE"


def read_password_file(path: str | Path) -> str:
    """The password in ``path``: its first line, without the line end."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"Redis password file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the Redis password file {path}: {type(exc).__name__}") from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise ValueError(f"the Redis password file {path} is empty")
    return password


def redis_settings(args: argparse.Namespace) -> tuple[str, str | None]:
    """(URL, password or None) from the flags and the environment; see the module docstring."""
    from sim2real.jobs.queue import redact_url, url_password

    url = args.redis or os.environ.get("SIM2REAL_REDIS_URL") or DEFAULT_REDIS_URL
    if args.redis and url_password(args.redis) is not None:
        print(f"sim2real {args.verb}: warning: the password in --redis {redact_url(args.redis)} is visible to "
              f"every user of this machine (ps); use ${PASSWORD_VARIABLE} or --redis-password-file",
              file=sys.stderr)
    source = args.redis_password_file or os.environ.get(PASSWORD_FILE_VARIABLE)
    password = read_password_file(source) if source else os.environ.get(PASSWORD_VARIABLE) or None
    return url, password


def _queue(args: argparse.Namespace, reconnect_timeout_s: float | None):
    from sim2real.jobs.queue import Queue

    url, password = redis_settings(args)
    return Queue(url, reconnect_timeout_s=reconnect_timeout_s, password=password)


def _worker(args: argparse.Namespace) -> int:
    from sim2real.jobs.worker import Worker

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s sim2real worker %(levelname)s %(message)s")
    queue = _queue(args, reconnect_timeout_s=None)
    worker = Worker(queue, backend=args.backend, name=args.name, artifacts=args.artifacts,
                    claim_idle_s=args.claim_idle_s, max_jobs=args.max_jobs, once=args.once)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        return worker.run()
    finally:
        queue.close()


def _submit(args: argparse.Namespace) -> int:
    from sim2real.eval.evaluate import check_gate, gate
    from sim2real.jobs.submit import build_job, wait

    if not args.wait and (args.json or args.report or args.min_success is not None):
        raise ValueError("--json, --report and --min-success need --wait")
    check_gate(args.min_success, args.scenario)
    job = build_job(args.model, scenario=args.scenario, episodes=args.episodes, seed=args.seed,
                    backend=args.backend, engine=args.engine, latency_ms=args.latency_ms, shard_size=args.shard_size,
                    policy=args.policy)
    queue = _queue(args, reconnect_timeout_s=args.reconnect_timeout)
    try:
        queue.submit(job)
        if not args.wait:
            print(json.dumps({"job_id": job.job_id, "shards": job.num_shards, "episodes": job.episodes}))
            return 0
        result = wait(queue, job.job_id, timeout_s=args.timeout, progress=sys.stderr.isatty())
    finally:
        queue.close()
    from sim2real.contracts.manifest import write_json_atomic

    if args.json:
        write_json_atomic(Path(args.json), result)
    if args.report:
        from sim2real.eval.report import write_report

        write_report(result, Path(args.report))
    print(json.dumps({"job_id": job.job_id,
                      **{k: result[k] for k in ("success_rate", "episodes", "collisions", "mean_progress_m")}}))
    return gate(result, args.min_success)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (got {text})")
    return value


def _add_redis(p: argparse.ArgumentParser) -> None:
    # No default value here: --help must not print a URL (or a password) taken from the environment.
    p.add_argument("--redis", metavar="URL",
                   help=f"Redis URL (default $SIM2REAL_REDIS_URL, else {DEFAULT_REDIS_URL}); keep the password "
                        f"out of it: a command line is visible to every user")
    p.add_argument("--redis-password-file", metavar="FILE",
                   help=f"read the Redis password from the first line of FILE (default ${PASSWORD_FILE_VARIABLE}, "
                        f"else ${PASSWORD_VARIABLE}, else the URL's)")


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the `worker` and `submit` subparsers to ``verbs``."""
    p = verbs.add_parser("worker", help="process evaluation shards from the Redis queue")
    _add_redis(p)
    p.add_argument("--backend", default="pybullet",
                   help="simulator backend whose shards to take (default %(default)s)")
    p.add_argument("--artifacts", default=os.environ.get("SIM2REAL_ARTIFACTS", "."),
                   help="folder that relative model paths are resolved against (default $SIM2REAL_ARTIFACTS or .)")
    p.add_argument("--claim-idle-s", type=_positive_float, default=60.0,
                   help="reclaim a shard whose worker has been silent this long (default %(default)s s)")
    p.add_argument("--name", help="consumer name (default <hostname>-<pid>)")
    p.add_argument("--max-jobs", type=int, help="exit once this many jobs this worker took part in have finished")
    p.add_argument("--once", action="store_true", help="exit when no shard is waiting (drain the queue)")
    p.set_defaults(func=_worker)

    p = verbs.add_parser("submit", help="queue an evaluation job; with --wait, gate on its result")
    p.add_argument("--model", required=True, help="ONNX model path, or 'expert' / 'spin'")
    p.add_argument("--scenario", default="default", help="built-in name or YAML path")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=1000, help="random seed (default %(default)s)")
    p.add_argument("--backend", default="pybullet", help="simulator backend")
    p.add_argument("--engine", default="auto", help="inference backend (auto, onnxruntime, tensorrt)")
    p.add_argument("--policy", default="inprocess", choices=POLICY_TRANSPORTS,
                   help="run the model in the worker (inprocess) or through the ROS 2 node (ros2)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay every command by this many ms")
    p.add_argument("--shard-size", type=int, default=10, help="episodes per shard (default %(default)s)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the result (needed by --json, --report and --min-success)")
    p.add_argument("--timeout", type=_positive_float, help="with --wait: give up after this many seconds")
    p.add_argument("--reconnect-timeout", type=_positive_float, default=30.0,
                   help="give up when Redis is unreachable this long (default %(default)s s)")
    p.add_argument("--json", help="write the JSON result here (with --wait)")
    p.add_argument("--report", help="write the HTML report here (with --wait)")
    p.add_argument("--min-success", type=float, help="with --wait: exit 1 when the success rate is below this")
    _add_redis(p)
    p.set_defaults(func=_submit)


def main(argv: list[str] | None = None) -> int:
    """``python -m sim2real.jobs.cli ...``: the same as ``sim2real ...`` (one parser, one error policy)."""
    from sim2real.cli import main as sim2real_main

    return sim2real_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
