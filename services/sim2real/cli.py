"""`sim2real <verb>`: every service is a verb; container images only choose the verb.

Each verb imports its service lazily, so the runtime image never imports torch and the
trainer never imports a simulator. Errors on bad input are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _datagen(args: argparse.Namespace) -> int:
    from sim2real.datagen.generate import generate

    manifest = generate(args.scenario, num=args.num, out=Path(args.out), seed=args.seed,
                        workers=args.workers, backend=args.backend)
    print(json.dumps({"out": args.out, "images": manifest["count"], "per_class": manifest["per_class"]}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from sim2real.train.trainer import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         input_size=args.input_size, seed=args.seed, val_fraction=args.val_fraction)
    checkpoint = train(Path(args.data), Path(args.out), config)
    print(json.dumps({"checkpoint": str(checkpoint)}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from sim2real.export.exporter import export

    paths = export(Path(args.checkpoint), Path(args.out),
                   data=Path(args.data) if args.data else None, int8=args.int8,
                   min_int8_agreement=args.min_int8_agreement)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sim2real.eval.evaluate import EvalConfig, evaluate, gate

    config = EvalConfig(scenario=args.scenario, episodes=args.episodes, seed=args.seed,
                        backend=args.backend, engine=args.engine)
    result = evaluate(args.model, config, json_out=Path(args.json) if args.json else None,
                      report_out=Path(args.report) if args.report else None)
    print(json.dumps({k: result[k] for k in ("success_rate", "episodes", "collisions", "mean_progress_m")}))
    return gate(result, args.min_success)


def _run(args: argparse.Namespace) -> int:
    from sim2real.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(scenario=args.scenario, num_images=args.num, epochs=args.epochs,
                            input_size=args.input_size, episodes=args.episodes, seed=args.seed,
                            workers=args.workers, min_int8_agreement=args.min_int8_agreement,
                            artifacts=Path(args.artifacts))
    from sim2real.eval.evaluate import gate

    return gate(run_pipeline(config), args.min_success)


def _bench(args: argparse.Namespace) -> int:
    from sim2real.bench.run import run_bench

    run_bench(Path(args.out), quick=args.quick)
    return 0


def _add_common(p: argparse.ArgumentParser, seed: int = 0) -> None:
    p.add_argument("--seed", type=int, default=seed, help="random seed (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim2real", description=__doc__.splitlines()[0])
    from sim2real import __version__

    parser.add_argument("--version", action="version", version=f"sim2real {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("datagen", help="render labelled depth images in simulator A (MuJoCo)")
    p.add_argument("--scenario", default="default", help="built-in name or YAML path")
    p.add_argument("--num", type=int, default=6000, help="images to generate")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--backend", default="mujoco", help="simulator backend")
    _add_common(p)
    p.set_defaults(func=_datagen)

    p = verbs.add_parser("train", help="train the 1-channel ResNet18 policy")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="output folder for the checkpoint")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--input-size", type=int, default=96, help="model input side in pixels")
    p.add_argument("--val-fraction", type=float, default=0.1)
    _add_common(p)
    p.set_defaults(func=_train)

    p = verbs.add_parser("export", help="export a checkpoint to ONNX (+ INT8 QDQ)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data", help="dataset folder for parity checks and INT8 calibration "
                                  "(default: the checkpoint's dataset, if it still exists)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the INT8 QDQ model (default on)")
    p.add_argument("--min-int8-agreement", type=float, default=0.95,
                   help="fail when INT8 top-1 agreement with FP32 is below this (default %(default)s)")
    p.set_defaults(func=_export)

    p = verbs.add_parser("eval", help="closed-loop evaluation in simulator B (PyBullet)")
    p.add_argument("--model", required=True, help="ONNX model path, or 'expert' for the privileged expert")
    p.add_argument("--scenario", default="default")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--backend", default="pybullet", help="simulator backend")
    p.add_argument("--engine", default="auto", help="inference backend (auto, onnxruntime, tensorrt)")
    p.add_argument("--json", help="write the JSON result here")
    p.add_argument("--report", help="write the HTML report here")
    p.add_argument("--min-success", type=float, help="exit 1 when the success rate is below this")
    _add_common(p, seed=1000)
    p.set_defaults(func=_eval)

    p = verbs.add_parser("run", help="the whole pipeline on the built-in defaults")
    p.add_argument("--scenario", default="default")
    p.add_argument("--num", type=int, default=6000, help="training images")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=2, help="datagen and eval processes")
    p.add_argument("--artifacts", default=os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"),
                   help="artifacts root: runs/<id>/ and latest (default $SIM2REAL_ARTIFACTS or artifacts)")
    p.add_argument("--min-int8-agreement", type=float, default=0.95,
                   help="fail the export when INT8 top-1 agreement with FP32 is below this (default %(default)s)")
    p.add_argument("--min-success", type=float, help="exit 1 when the policy's success rate is below this")
    _add_common(p)
    p.set_defaults(func=_run)

    p = verbs.add_parser("bench", help="measure every stage; print a table and write bench.json")
    p.add_argument("--out", default=os.path.join(os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"), "bench.json"))
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not figures to quote)")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"sim2real {args.verb}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, NotImplementedError, OSError) as exc:
        print(f"sim2real {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
