"""`sim2real run`: datagen → train → export → eval (learned policy and expert) in one run folder.

Everything lands in ``<artifacts>/runs/<run-id>/``; ``<artifacts>/latest`` is swapped atomically
to point at the newest finished run, so it never points at a half-made one. A run that fails (or
is interrupted) is renamed ``<run-id>.failed/`` with a ``failed.json`` naming the stage and the
error: kept for inspection, never mistaken for a finished run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from sim2real.contracts.manifest import write_json_atomic
from sim2real.contracts.scenario import load_scenario


@dataclass
class PipelineConfig:
    scenario: str = "default"
    num_images: int = 6000
    epochs: int = 6
    input_size: int = 128
    patience: int = 0
    schedule: str = "onecycle"
    episodes: int = 100
    seed: int = 0
    workers: int = 2
    min_int8_agreement: float = 0.95
    artifacts: Path = Path("artifacts")
    run_id: str | None = None
    progress: bool = True
    cache_dir: Path | None = None   # the expert result cache (eval.expert_cache); None: always evaluate


def _say(message: str) -> None:
    print(f"[sim2real run] {message}", file=sys.stderr, flush=True)


def _point_latest(artifacts: Path, run_dir: Path) -> None:
    link = artifacts / "latest"
    tmp = artifacts / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.relative_to(artifacts))
    os.replace(tmp, link)


def _failed_dir(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".failed")


def _mark_failed(run_dir: Path, run_id: str, stage: str, exc: BaseException, timings: dict) -> None:
    failed = _failed_dir(run_dir)
    os.replace(run_dir, failed)
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    write_json_atomic(failed / "failed.json", {"run_id": run_id, "stage": stage, "error": error,
                                               "stage_seconds": timings})
    _say(f"{stage or 'run'} failed; the partial run is in {failed} (latest is unchanged)")


def _stages(config: PipelineConfig, run_dir: Path, run_id: str, stage) -> tuple[dict, dict, str]:
    """datagen → train → export → eval into ``run_dir``; returns both results and the model's path in the run."""
    from sim2real.datagen.generate import generate
    from sim2real.eval.evaluate import EvalConfig, evaluate
    from sim2real.eval.expert_cache import evaluate_expert
    from sim2real.eval.report import write_report
    from sim2real.export.exporter import export
    from sim2real.train.trainer import TrainConfig, train

    data_dir = run_dir / "dataset"
    stage("datagen", lambda: generate(config.scenario, num=config.num_images, out=data_dir, seed=config.seed,
                                      workers=config.workers, progress=config.progress))
    checkpoint = stage("train", lambda: train(data_dir, run_dir / "train",
                                              TrainConfig(epochs=config.epochs, input_size=config.input_size,
                                                          seed=config.seed, patience=config.patience,
                                                          schedule=config.schedule), progress=config.progress))
    models = stage("export", lambda: export(checkpoint, run_dir / "model", data=data_dir,
                                            min_int8_agreement=config.min_int8_agreement, progress=config.progress))
    model = models["int8"]
    eval_config = EvalConfig(scenario=config.scenario, episodes=config.episodes, seed=config.seed + 1000,
                             workers=config.workers)
    expert = stage("eval expert", lambda: evaluate_expert(eval_config, config.cache_dir,
                                                          json_out=run_dir / "eval_expert.json",
                                                          progress=config.progress))
    result = stage("eval policy", lambda: evaluate(str(model), eval_config, progress=config.progress))
    result["expert"] = {k: expert[k] for k in ("success_rate", "success_ci95", "collisions", "mean_progress_m")}
    result["run_id"] = run_id
    write_json_atomic(run_dir / "eval.json", result)
    write_report(result, run_dir / "report.html", compare=expert)
    return result, expert, str(model.relative_to(run_dir))


def run_pipeline(config: PipelineConfig) -> dict:
    """Run every stage; return the learned policy's eval result (with the expert's beside it)."""
    scenario = load_scenario(config.scenario)
    if config.num_images < 1 or config.epochs < 1 or config.episodes < 1 or config.workers < 1:
        raise ValueError("--num, --epochs, --episodes and --workers must each be at least 1")
    if not 0.0 <= config.min_int8_agreement <= 1.0:
        raise ValueError(f"--min-int8-agreement must be a fraction between 0 and 1, got {config.min_int8_agreement}")
    run_id = config.run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + scenario.name
    artifacts = Path(config.artifacts)
    run_dir = artifacts / "runs" / run_id
    for taken in (run_dir, _failed_dir(run_dir)):
        if taken.exists():
            raise ValueError(f"run folder {taken} already exists")
    run_dir.mkdir(parents=True)
    timings: dict[str, float] = {}
    current = [""]

    def stage(name: str, fn):
        current[0] = name
        _say(f"{name} …")
        start = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - start, 1)
        _say(f"{name} done in {timings[name]:.1f} s")
        return value

    try:
        result, expert, model = _stages(config, run_dir, run_id, stage)
    except BaseException as exc:
        _mark_failed(run_dir, run_id, current[0], exc, timings)
        raise
    write_json_atomic(run_dir / "run.json", {"run_id": run_id,
                                             "config": {**asdict(config), "artifacts": str(artifacts),
                                                        "cache_dir": config.cache_dir and str(config.cache_dir)},
                                             "stage_seconds": timings, "model": model,
                                             "expert_cached": bool(expert.get("cache", {}).get("hit"))})
    _point_latest(artifacts, run_dir)
    _say(f"policy success {result['success_rate']:.2f} (expert {expert['success_rate']:.2f}) over "
         f"{result['episodes']} episodes in {result['backend']}; report: {artifacts / 'latest' / 'report.html'}")
    return result
