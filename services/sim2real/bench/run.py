"""Run every benchmark on the real services and write ``bench.json``."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim2real.bench import machine
from sim2real.bench.stats import time_calls
from sim2real.contracts.manifest import write_json_atomic

BENCH_SIZE = 224


def _say(message: str) -> None:
    print(f"[sim2real bench] {message}", file=sys.stderr, flush=True)


def bench_datagen(work: Path, num: int, workers: int) -> dict:
    from sim2real.datagen.generate import generate

    start = time.perf_counter()
    generate("default", num=num, out=work / "data", seed=0, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    return {"datagen_images_per_s": round(num / seconds, 1), "datagen_workers": workers,
            "datagen_resolution": f"{BENCH_SIZE}x{BENCH_SIZE}"}


def bench_train_throughput(input_sizes: tuple[int, ...], batch: int = 32, steps: int = 6) -> dict:
    """Optimizer steps per second of the project's ResNet18 (forward, backward, update)."""
    import torch

    from sim2real.train.model import build_model

    torch.manual_seed(0)
    out = {}
    for size in input_sizes:
        model = build_model("resnet18").train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = torch.rand(batch, 1, size, size), torch.randint(0, 3, (batch,))

        def step():
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        per_step = time_calls(step, repeats=steps, warmup=2)
        out[str(size)] = round(batch / (per_step["mean"] / 1e3), 1)
    return out


def bench_inference(work: Path, repeats: int) -> tuple[dict, Path]:
    """PyTorch eager, ONNX Runtime FP32 and INT8 at 224×224, batch 1, on a briefly trained model."""
    import torch

    from sim2real.export.exporter import export
    from sim2real.runtime import engines
    from sim2real.train.trainer import TrainConfig, load_checkpoint, train

    checkpoint = train(work / "data", work / "train", TrainConfig(epochs=1, input_size=BENCH_SIZE, batch_size=32),
                       progress=False)
    models = export(checkpoint, work / "model", data=work / "data", min_int8_agreement=0.0, progress=False)
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    x = np.random.default_rng(0).random((1, 1, BENCH_SIZE, BENCH_SIZE), dtype=np.float32)
    xt = torch.from_numpy(x)
    results = {}
    with torch.inference_mode():
        results["torch_eager_fp32"] = time_calls(lambda: model(xt), repeats)
    for key, path in (("onnxruntime_fp32", models["onnx"]), ("onnxruntime_int8", models["int8"])):
        engine = engines.create("onnxruntime", path)
        results[key] = time_calls(lambda: engine.infer(x), repeats)
    return results, models["int8"]


def bench_eval(episodes: int) -> dict:
    from sim2real.eval.evaluate import EvalConfig, evaluate

    result = evaluate("expert", EvalConfig(scenario="default", episodes=episodes, workers=1), progress=False)
    return {"eval_steps_per_s": round(result["steps_per_s"], 1), "eval_episodes": episodes,
            "eval_policy": "expert"}


def run_bench(out: Path, quick: bool = False) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    results: dict = {"machine": machine.describe()}
    with tempfile.TemporaryDirectory(prefix="sim2real-bench-") as tmp:
        work = Path(tmp)
        _say("datagen …")
        results.update(bench_datagen(work, num=200 if quick else 1000, workers=min(2, os.cpu_count() or 1)))
        _say("training throughput …")
        per_size = bench_train_throughput((96, BENCH_SIZE) if not quick else (96,))
        results["train_images_per_s"] = per_size.get(str(BENCH_SIZE), per_size["96"])
        results["train_images_per_s_by_input"] = per_size
        _say("inference latency …")
        results["inference_ms"], _ = bench_inference(work, repeats=50 if quick else 300)
        _say("evaluation …")
        results.update(bench_eval(episodes=2 if quick else 10))
    write_json_atomic(out, results)
    print(format_table(results))
    return results


def format_table(results: dict) -> str:
    lines = [f"machine: {results['machine']['cpu']} × {results['machine']['cores']} cores, "
             f"GPU: {results['machine']['gpu'] or 'none'}", ""]
    lines.append(f"{'inference (224x224, batch 1)':<32}{'p50 ms':>10}{'p99 ms':>10}")
    for name, figures in results["inference_ms"].items():
        lines.append(f"{name:<32}{figures['p50']:>10.2f}{figures['p99']:>10.2f}")
    lines.append("")
    for key in ("datagen_images_per_s", "train_images_per_s", "eval_steps_per_s"):
        lines.append(f"{key:<32}{results[key]:>10.1f}")
    for size, value in results["train_images_per_s_by_input"].items():
        lines.append(f"{'  train img/s @ ' + size + 'x' + size:<32}{value:>10.1f}")
    return "\n".join(lines)
