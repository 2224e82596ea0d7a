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

from sim2real.contracts.evaluation import POLICY_TRANSPORTS

EXIT_BAD_INPUT = 2


def _datagen(args: argparse.Namespace) -> int:
    if args.sensor_grid:
        from sim2real.datagen.sensor_grid import write_sensor_grid

        path = write_sensor_grid(args.scenario, Path(args.sensor_grid), seed=args.seed)
        print(json.dumps({"sensor_grid": str(path)}))
        return 0
    if not args.out:
        raise ValueError("--out is required (the dataset folder to create)")
    from sim2real.datagen.generate import generate

    balance: float | str | None = "scenario"
    if args.balance is not None and args.balance.lower() in ("natural", "none", "off"):
        balance = None
    elif args.balance is not None:
        try:
            balance = float(args.balance)
        except ValueError:
            raise ValueError(f"--balance must be a FORWARD fraction between 0 and 1 or 'natural', "
                             f"not {args.balance!r}") from None
    manifest = generate(args.scenario, num=args.num, out=Path(args.out), seed=args.seed,
                        workers=args.workers, backend=args.backend, shard_size=args.shard_size,
                        balance=balance, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({"out": args.out, "images": manifest["count"], "per_class": manifest["per_class"],
                      "shards": len(manifest["shards"])}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields, replace

    from sim2real.train.trainer import TrainConfig, init_config, stored_config, train

    # Settings left out of the command come from the training state when resuming, from the starting
    # checkpoint's (arch, input size) when fine-tuning, else the defaults.
    base = stored_config(args.resume) if args.resume else TrainConfig()
    if args.init and not args.resume:
        start = init_config(args.init)
        base = replace(base, arch=start.arch, input_size=start.input_size)
    if args.freeze is not None:
        args.freeze = tuple(part.strip() for part in args.freeze.split(",") if part.strip())
    if args.mix is not None:
        args.mix = dict(_share(item) for item in args.mix)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    config = replace(base, **given)
    result = train(args.data, Path(args.out), config, resume=Path(args.resume) if args.resume else None,
                   stop_after=args.stop_after)
    if os.environ.get("RANK", "0") == "0":
        key = "checkpoint" if result.name == "checkpoint.pt" else "resume_state"
        print(json.dumps({key: str(result)}))
    return 0


def _share(item: str) -> tuple[str, float]:
    """``NAME=SHARE`` (``--mix``) as (name, share)."""
    name, sep, value = item.partition("=")
    try:
        share = float(value)
    except ValueError:
        share = None
    if not (sep and name and share is not None):
        raise ValueError(f"--mix takes NAME=SHARE (for example real=0.3), got {item!r}")
    return name, share


def _export(args: argparse.Namespace) -> int:
    if args.tensorrt:
        from sim2real.export.tensorrt_build import require_tensorrt

        require_tensorrt()  # before any work: a one-line error where TensorRT is missing
    engine_options = {"timing_cache": Path(args.timing_cache) if args.timing_cache else None,
                      "max_batch": args.max_batch, "workspace_mb": args.workspace_mb}
    if args.onnx:
        from sim2real.export.tensorrt_build import build_engine

        if not args.tensorrt:
            raise ValueError("--onnx builds a TensorRT engine from an exported model: add --tensorrt fp16|int8")
        engine = build_engine(Path(args.onnx), Path(args.out), args.tensorrt, **engine_options)
        print(json.dumps({"engine": str(engine)}))
        return 0
    if args.tensorrt == "int8" and not args.int8:
        raise ValueError("--tensorrt int8 is built from the INT8 QDQ model: drop --no-int8")
    from sim2real.export.exporter import export

    paths = export(Path(args.checkpoint), Path(args.out),
                   data=Path(args.data) if args.data else None, int8=args.int8,
                   min_int8_agreement=args.min_int8_agreement)
    if args.tensorrt:
        from sim2real.export.tensorrt_build import build_engine

        source = paths["int8_trt"] if args.tensorrt == "int8" else paths["onnx"]
        paths["engine"] = build_engine(source, Path(args.out), args.tensorrt, **engine_options)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sim2real.eval.evaluate import EvalConfig, check_gate, evaluate, gate

    check_gate(args.min_success, args.scenario)
    config = EvalConfig(scenario=args.scenario, episodes=args.episodes, seed=args.seed,
                        backend=args.backend, engine=args.engine, workers=args.workers,
                        latency_ms=args.latency_ms, policy=args.policy, hysteresis=args.hysteresis,
                        failed_bags=args.failed_bags)
    json_out = Path(args.json) if args.json else None
    report_out = Path(args.report) if args.report else None
    if args.latency_sweep:
        from sim2real.eval.sweep import parse_latencies, sweep

        result = sweep(args.model, config, parse_latencies(args.latency_sweep), json_out, report_out)
    elif args.model == "expert":
        from sim2real.eval.expert_cache import evaluate_expert

        result = evaluate_expert(config, _cache_dir(args), json_out=json_out, report_out=report_out)
    else:
        result = evaluate(args.model, config, json_out=json_out, report_out=report_out)
    print(json.dumps({k: result[k] for k in ("success_rate", "episodes", "collisions", "mean_progress_m")}))
    return gate(result, args.min_success)


def _cache_dir(args: argparse.Namespace) -> Path | None:
    from sim2real.eval.expert_cache import default_cache_dir

    if args.no_cache:
        return None
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", metavar="DIR",
                   help="reuse the expert's result across runs from here (default $SIM2REAL_CACHE_DIR, else "
                        "~/.cache/sim2real); keyed by scenario, seed, episodes and the simulator's code")
    p.add_argument("--no-cache", action="store_true", help="evaluate the expert afresh; store nothing")


def _compare(args: argparse.Namespace) -> int:
    from sim2real.eval.compare import run, summary_line

    result = run(Path(args.a), Path(args.b), args.margin, args.min_episodes,
                 Path(args.json) if args.json else None)
    print(json.dumps({k: result[k] for k in ("difference", "ci95", "episodes", "holds")}))
    print(f"sim2real compare: {summary_line(result)}", file=sys.stderr)
    return 0 if result["holds"] else 1


def _suite(args: argparse.Namespace) -> int:
    from sim2real.eval.evaluate import EvalConfig
    from sim2real.eval.suite import run_suite

    config = EvalConfig(engine=args.engine, workers=args.workers, hysteresis=args.hysteresis,
                        failed_bags=args.failed_bags)
    result = run_suite(args.model, args.suite, Path(args.out), config, episodes=args.episodes)
    print(json.dumps({"suite": result["suite"], "table": str(Path(args.out) / "suite.md"),
                      "rows": [{k: row[k] for k in ("scenario", "difference", "difference_ci95")}
                               for row in result["rows"]]}))
    return 0


def _run(args: argparse.Namespace) -> int:
    from sim2real.eval.evaluate import check_gate, gate
    from sim2real.pipeline import PipelineConfig, run_pipeline

    check_gate(args.min_success, args.scenario)
    config = PipelineConfig(scenario=args.scenario, num_images=args.num, epochs=args.epochs,
                            input_size=args.input_size, episodes=args.episodes, seed=args.seed,
                            workers=args.workers, min_int8_agreement=args.min_int8_agreement,
                            artifacts=Path(args.artifacts), patience=args.patience, schedule=args.schedule,
                            cache_dir=_cache_dir(args))
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
    p.add_argument("--out", help="dataset folder to create (required unless --sensor-grid)")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--backend", default="mujoco", help="simulator backend (mujoco; isaac in the isaac-datagen image)")
    p.add_argument("--shard-size", type=int, default=500, help="images per shard (default %(default)s)")
    p.add_argument("--balance", metavar="F",
                   help="target FORWARD fraction per shard, LEFT and RIGHT split the rest; 'natural' keeps the "
                        "pose sampler's mix (default: the scenario's datagen.forward_fraction)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same arguments); finished shards whose sha256 "
                        "verifies are kept")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sensor-grid", metavar="PNG",
                   help="instead of a dataset, write a PNG of one scene under each sensor model")
    _add_common(p)
    p.set_defaults(func=_datagen)

    p = verbs.add_parser("train", help="train the 1-channel ResNet policy (torchrun for several processes)",
                         description="Train on a datagen dataset. Run under torchrun for data-parallel training: "
                                     "torchrun --nproc_per_node N -m sim2real train ... (Gloo on CPU, NCCL on CUDA).")
    p.add_argument("--data", required=True, action="append", metavar="[NAME=]FOLDER",
                   help="dataset folder; repeat to co-train on several (the first is the primary one: its camera "
                        "makes the input contract); NAME defaults to the folder's name")
    p.add_argument("--out", required=True, help="output folder for the checkpoint")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune: start from this finished checkpoint.pt (or its run folder); its arch, input "
                        "size and camera contract are kept")
    p.add_argument("--mix", action="append", metavar="NAME=SHARE",
                   help="draw this share of every batch from dataset NAME (repeatable); the other datasets fill "
                        "the rest, e.g. --data sim=D1 --data real=D2 --mix real=0.3")
    p.add_argument("--freeze", metavar="PARTS",
                   help="with --init: keep these parts as the checkpoint has them, comma-separated from stem, "
                        "layer1, layer2, layer3, layer4 (e.g. stem,layer1)")
    p.add_argument("--patience", type=int, metavar="EPOCHS",
                   help="stop after this many epochs without a better validation loss and keep the best epoch "
                        "(default 0: every epoch; --epochs stays the cap)")
    p.add_argument("--schedule", choices=["onecycle", "plateau"],
                   help="learning rate: onecycle over --epochs (default), or plateau: warm-up, then constant, cut "
                        "tenfold when validation stops improving, stop at the next plateau (needs --patience)")
    p.add_argument("--arch", choices=["resnet18", "resnet10"],
                   help="network: resnet18, or resnet10 for small devices (default resnet18)")
    p.add_argument("--epochs", type=int, help="default 6")
    p.add_argument("--batch-size", type=int, help="global batch, split across processes (default 64)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.002; lower it to fine-tune)")
    p.add_argument("--input-size", type=int,
                   help="model input width in pixels, 16 to 1024; the height follows the camera's aspect "
                        "(default 128: 128x72 for the default 16:9 camera)")
    p.add_argument("--val-fraction", type=float, help="validation share of the dataset (default 0.1)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--augment", type=float, metavar="P",
                   help="probability that an image gets sensor-model augmentation (noise k*z^2, dropout, holes); "
                        "0 disables (default 0.5)")
    p.add_argument("--noise-sigma", dest="noise_sigma_per_m2", type=float, metavar="K",
                   help="augmentation noise ceiling, std dev = K*z^2 metres (default: the dataset's scenario)")
    p.add_argument("--dropout", type=float, help="augmentation pixel-dropout ceiling (default: the dataset's scenario)")
    p.add_argument("--holes", type=int, help="most invalid patches per augmented image (default 3)")
    p.add_argument("--device", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision on CUDA (default on; the CPU always trains in FP32)")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="write TensorBoard scalars to OUT/tensorboard (default on when tensorboard is installed)")
    p.add_argument("--threads", type=int, help="CPU threads per process (default: cores / local processes)")
    p.add_argument("--allow-missing-classes", action="store_true", default=None,
                   help="train even when the dataset lacks an action (refused by default: the policy could never "
                        "choose it)")
    p.add_argument("--resume", metavar="LAST_PT",
                   help="continue an interrupted run from its last.pt (or its folder); settings left out are "
                        "taken from it")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop after this epoch, leaving OUT/last.pt to --resume from (time-sliced jobs)")
    p.set_defaults(func=_train)

    p = verbs.add_parser("export", help="export a checkpoint to ONNX (+ INT8 QDQ, + TensorRT engine)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training checkpoint to export")
    source.add_argument("--onnx", help="an exported model.onnx / model.int8-trt.onnx: only build the TensorRT "
                                       "engine from it (no PyTorch needed; for the device)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data", help="dataset folder for parity checks and INT8 calibration "
                                  "(default: the checkpoint's dataset, if it still exists)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the INT8 QDQ models (default on)")
    p.add_argument("--min-int8-agreement", type=float, default=0.95,
                   help="fail when INT8 top-1 agreement with FP32 is below this (default %(default)s)")
    p.add_argument("--tensorrt", choices=["fp16", "int8"],
                   help="also build a TensorRT engine for this machine's GPU (needs TensorRT: the "
                        "jetson-runtime image)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file, read and updated "
                                          "(default OUT/tensorrt.timing.cache)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts (default %(default)s)")
    p.add_argument("--workspace-mb", type=int, default=1024,
                   help="TensorRT builder workspace limit in MiB (default %(default)s)")
    p.set_defaults(func=_export)

    p = verbs.add_parser("eval", help="closed-loop evaluation in simulator B (PyBullet)")
    p.add_argument("--model", required=True, help="ONNX model path, or 'expert' for the privileged expert")
    p.add_argument("--scenario", default="default")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--backend", default="pybullet", help="simulator backend")
    p.add_argument("--engine", default="auto", help="inference backend (auto, onnxruntime, tensorrt)")
    p.add_argument("--policy", default="inprocess", choices=POLICY_TRANSPORTS,
                   help="inprocess: the model in the evaluator; ros2: the real `sim2real serve` node, "
                        "fed depth images and obeyed on cmd_vel over ROS 2 topics (default %(default)s)")
    p.add_argument("--json", help="write the JSON result here")
    p.add_argument("--report", help="write the HTML report here")
    p.add_argument("--workers", type=int, default=1, help="processes (default %(default)s)")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="delay every command by this many ms (the cost of remote inference)")
    p.add_argument("--latency-sweep", metavar="MS,MS,...",
                   help="evaluate at each latency; the report plots success rate against latency")
    p.add_argument("--hysteresis", default="model", metavar="model|off|K[,P]",
                   help="a model's turn hysteresis: 'model' (the one it carries, default), 'off', or K[,P]: a turn "
                        "goes on until the model chooses forward K images in a row, each with probability >= P")
    p.add_argument("--failed-bags", metavar="DIR",
                   help="write each failed episode to DIR as a rosbag2 (MCAP): depth, CameraInfo, /cmd_vel, "
                        "odometry, TF and the obstacles as markers")
    p.add_argument("--min-success", type=float, help="exit 1 when the success rate is below this")
    _add_cache(p)
    _add_common(p, seed=1000)
    p.set_defaults(func=_eval)

    p = verbs.add_parser("compare", help="gate protocol: is eval A no worse than eval B, episode by episode",
                         description="Pair two `eval --json` results on the same seeds by episode and test "
                                     "'A is no worse than B': the lower 95%% bound of the paired difference in "
                                     "success rate (A - B, Newcombe's interval) must be at or above --margin. "
                                     "Exit 0 when it holds, 1 when not.")
    p.add_argument("a", help="eval JSON of the candidate (the new model, or the policy)")
    p.add_argument("b", help="eval JSON of the reference (the old model, or the expert), same --seed")
    p.add_argument("--margin", type=float, default=-0.05, help="lowest acceptable lower bound (default %(default)s)")
    p.add_argument("--min-episodes", type=int, default=200,
                   help="fewest paired episodes the protocol accepts (default %(default)s)")
    p.add_argument("--json", help="write the comparison here")
    p.set_defaults(func=_compare)

    p = verbs.add_parser("suite", help="a model and the expert side by side on a suite of scenarios (held-out)",
                         description="Evaluate MODEL and the privileged expert on every scenario of a suite, each "
                                     "on its own seeds, and write OUT/suite.md: success rates with 95%% intervals, "
                                     "the paired difference, turning-in-place failures and turn reversals. "
                                     "'heldout' is never used to tune; tune on 'validation'.")
    p.add_argument("--model", required=True, help="exported model (or 'expert')")
    p.add_argument("--suite", default="heldout", help="heldout, validation or a suite YAML (default %(default)s)")
    p.add_argument("--out", required=True, help="folder for the eval JSONs, suite.json and suite.md")
    p.add_argument("--episodes", type=int, help="episodes per scenario (default: the suite's)")
    p.add_argument("--workers", type=int, default=1, help="processes (default %(default)s)")
    p.add_argument("--engine", default="auto", help="inference backend (auto, onnxruntime, tensorrt)")
    p.add_argument("--hysteresis", default="model", metavar="model|off|K[,P]",
                   help="the model's turn hysteresis, as for eval (default %(default)s)")
    p.add_argument("--failed-bags", metavar="DIR", help="write the policy's failed episodes to DIR/<scenario>/")
    p.set_defaults(func=_suite)

    p = verbs.add_parser("run", help="the whole pipeline on the built-in defaults")
    p.add_argument("--scenario", default="default")
    p.add_argument("--num", type=int, default=6000, help="training images")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--input-size", type=int, default=128,
                   help="model input width in pixels; the height follows the camera's aspect (default %(default)s)")
    p.add_argument("--patience", type=int, default=0, metavar="EPOCHS",
                   help="training stops after this many epochs without a better validation loss (default 0: off; "
                        "see sim2real train --patience)")
    p.add_argument("--schedule", choices=["onecycle", "plateau"], default="onecycle",
                   help="training's learning-rate schedule (default %(default)s; plateau needs --patience)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--workers", type=int, default=2, help="datagen and eval processes")
    p.add_argument("--artifacts", default=os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"),
                   help="artifacts root: runs/<id>/ and latest (default $SIM2REAL_ARTIFACTS or artifacts)")
    p.add_argument("--min-int8-agreement", type=float, default=0.95,
                   help="fail the export when INT8 top-1 agreement with FP32 is below this (default %(default)s)")
    p.add_argument("--min-success", type=float, help="exit 1 when the policy's success rate is below this")
    _add_cache(p)
    _add_common(p)
    p.set_defaults(func=_run)

    p = verbs.add_parser("bench", help="measure every stage; print a table and write bench.json")
    p.add_argument("--out", default=os.path.join(os.environ.get("SIM2REAL_ARTIFACTS", "artifacts"), "bench.json"))
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not figures to quote)")
    p.set_defaults(func=_bench)

    from sim2real.calibrate.cli import register as register_calibrate
    from sim2real.deploy.cli import register as register_deploy
    from sim2real.jobs.cli import register as register_jobs
    from sim2real.recordings.cli import register as register_recordings
    from sim2real.runtime.cli import register as register_runtime

    register_runtime(verbs)
    register_recordings(verbs)
    register_calibrate(verbs)
    register_jobs(verbs)
    register_deploy(verbs)
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
