"""Run every benchmark on the real services and write ``bench.json``."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim2real import machine
from sim2real.bench.stats import time_calls
from sim2real.contracts.manifest import write_json_atomic

BENCH_SIZE = 224       # input width; the default camera makes it 224x126
PIPELINE_SIZE = 128    # the pipeline's input: 128x72


def _say(message: str) -> None:
    print(f"[sim2real bench] {message}", file=sys.stderr, flush=True)


def bench_datagen(work: Path, num: int, workers: int) -> dict:
    from sim2real.datagen.generate import generate

    start = time.perf_counter()
    generate("default", num=num, out=work / "data", seed=0, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    return {"datagen_images_per_s": round(num / seconds, 1), "datagen_workers": workers,
            "datagen_resolution": "default scenario cameras, within 224x126"}


def bench_train_throughput(input_sizes: tuple[int, ...], batch: int = 32, steps: int = 6) -> dict:
    """Images per second of the project's ResNet18 through forward, backward and update."""
    import torch

    from sim2real.train.model import build_model

    torch.manual_seed(0)
    out = {}
    for size in input_sizes:
        model = build_model("resnet18").train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = torch.rand(batch, 2, _height(size), size), torch.randint(0, 3, (batch,))

        def step(model=model, optimizer=optimizer, x=x, y=y):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        per_step = time_calls(step, repeats=steps, warmup=2)
        out[str(size)] = round(batch / (per_step["mean"] / 1e3), 1)
    return out


def _train_and_export(work: Path, input_size: int) -> tuple[Path, dict[str, Path]]:
    """A briefly trained model at ``input_size`` and its exports: what the latency figures run on."""
    from sim2real.export.exporter import export
    from sim2real.train.trainer import TrainConfig, train

    checkpoint = train(work / "data", work / f"train{input_size}",
                       TrainConfig(epochs=1, input_size=input_size, batch_size=32), progress=False)
    models = export(checkpoint, work / f"model{input_size}", data=work / "data", min_int8_agreement=0.0,
                    progress=False)
    return checkpoint, models


def _height(width: int) -> int:
    """The input height for ``width`` with the default scenario's 16:9 camera."""
    return round(width * 126 / 224)


def bench_inference(checkpoint: Path, models: dict[str, Path], size: int, repeats: int) -> dict:
    """Batch 1 at input width ``size``: PyTorch eager FP32, the network alone and the shipped function
    (the image and its mirror as one batch of 2, what the exported graphs compute), then ONNX Runtime
    FP32 and both INT8 forms (the exported, mirror-equivariant graphs), each with the engine's default
    session settings."""
    import torch

    from sim2real.runtime import engines
    from sim2real.train.trainer import load_checkpoint

    x = np.random.default_rng(0).random((1, 2, _height(size), size), dtype=np.float32)
    model, _ = load_checkpoint(checkpoint)
    xt = torch.from_numpy(x)
    mirrored = torch.cat([xt, xt.flip(-1)])
    with torch.inference_mode():
        results = {"torch_eager_fp32": time_calls(lambda: model(xt), repeats),
                   "torch_eager_fp32_mirrored": time_calls(lambda: model(mirrored), repeats)}
    for key, name in (("onnxruntime_fp32", "onnx"), ("onnxruntime_int8", "int8"),
                      ("onnxruntime_int8_trt_form", "int8_trt")):
        engine = engines.create("onnxruntime", models[name])
        results[key] = time_calls(lambda engine=engine: engine.infer(x), repeats)
    return results


def int8_speedup(figures: dict) -> dict:
    """p50 of PyTorch eager over ONNX Runtime INT8: against the same function, and against the network alone."""
    int8 = figures["onnxruntime_int8"]["p50"]
    return {"vs_torch_eager_same_function": round(figures["torch_eager_fp32_mirrored"]["p50"] / int8, 2),
            "vs_torch_eager_network_alone": round(figures["torch_eager_fp32"]["p50"] / int8, 2)}


def bench_session_settings(model_int8: Path, size: int, repeats: int) -> dict:
    """The INT8 model at batch 1 under ONNX Runtime session settings: intra-op threads, spin-waiting,
    graph optimisation level (p50/p99 ms each). The engine's default is the first row's settings with
    ``SIM2REAL_ORT_THREADS`` threads (all cores when unset; ``serve`` and eval workers set 1)."""
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 2, _height(size), size), dtype=np.float32)
    settings = {"1_thread": (1, True, "all"), "2_threads": (2, True, "all"),
                "2_threads_no_spin": (2, False, "all"), "1_thread_extended_opt": (1, True, "extended")}
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    out = {}
    for name, (threads, spin, level) in settings.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = levels[level]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        session = ort.InferenceSession(str(model_int8), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        out[name] = time_calls(lambda session=session, feed=feed: session.run(None, feed), repeats)
    return out


def run_bench(out: Path, quick: bool = False) -> dict:
    from sim2real.bench.cpu_score import cpu_score
    from sim2real.bench.eval_queue import bench_eval_transports, bench_eval_wall
    from sim2real.bench.mirror_cost import bench_mirror_cost
    from sim2real.bench.ros2_loop import bench_ros2_loop

    _say(f"machine: {machine.label()}")
    results: dict = {"machine": {**machine.describe(), "score": cpu_score()}}
    repeats = 50 if quick else 300
    with tempfile.TemporaryDirectory(prefix="sim2real-bench-") as tmp:
        work = Path(tmp)
        _say("datagen …")
        results.update(bench_datagen(work, num=200 if quick else 1000, workers=min(2, os.cpu_count() or 1)))
        _say("training throughput …")
        per_size = bench_train_throughput((PIPELINE_SIZE,) if quick else (PIPELINE_SIZE, BENCH_SIZE))
        results["train_images_per_s"] = per_size.get(str(BENCH_SIZE), per_size[str(PIPELINE_SIZE)])
        results["train_images_per_s_by_input"] = per_size
        _say("mirror equivariance: the network alone against the exported graph …")
        results["mirror_cost_ms"] = bench_mirror_cost(repeats=50 if quick else 200)
        for size, key in ((BENCH_SIZE, "inference_ms"), (PIPELINE_SIZE, f"inference_ms_{PIPELINE_SIZE}")):
            _say(f"inference latency at {size}x{_height(size)} …")
            checkpoint, models = _train_and_export(work, size)
            results[key] = bench_inference(checkpoint, models, size, repeats)
            results.setdefault("int8_speedup", {})[f"{size}x{_height(size)}"] = int8_speedup(results[key])
        _say(f"ONNX Runtime session settings, INT8 at {PIPELINE_SIZE}x{_height(PIPELINE_SIZE)} …")
        results["onnxruntime_session_ms"] = bench_session_settings(models["int8"], PIPELINE_SIZE, repeats)
        _say("ROS 2 loop: image published → cmd_vel received, across two processes …")
        results["ros2_loop_ms"] = bench_ros2_loop(models["int8"], repeats=100 if quick else 500)
        results["ros2_loop_model"] = (f"the default pipeline model (ResNet18, depth and validity channels, "
                                      f"mirror-equivariant graph), INT8 ONNX at "
                                      f"{PIPELINE_SIZE}x{_height(PIPELINE_SIZE)} input; 224x224 16UC1 images")
        _say("evaluation of that model: in-process and through the ROS 2 node …")
        results.update(bench_eval_transports(str(models["int8"]), episodes=2 if quick else 10))
    _say("evaluation …")
    results.update(bench_eval_wall(episodes=4 if quick else 100))
    write_json_atomic(out, results)
    print(format_table(results))
    return results


def format_table(results: dict) -> str:
    from sim2real.bench.eval_queue import format_rows

    info = results["machine"]
    score = info.get("score") or {}
    lines = [f"machine: {info['cpu']} × {info['cores']} cores, {info.get('isa', '?')}, GPU: {info['gpu'] or 'none'}",
             (f"CPU score (1 thread, 512³): fp32 {score.get('fp32_gflops', '?')} GFLOP/s, "
              f"int8 {score.get('int8_gops', '?')} GOP/s"), ""]
    sections = ((f"inference {BENCH_SIZE}x{_height(BENCH_SIZE)}, batch 1", results["inference_ms"]),
                (f"inference {PIPELINE_SIZE}x{_height(PIPELINE_SIZE)}, batch 1",
                 results[f"inference_ms_{PIPELINE_SIZE}"]),
                (f"ORT session settings, INT8 {PIPELINE_SIZE}x{_height(PIPELINE_SIZE)}",
                 results.get("onnxruntime_session_ms", {})),
                ("ROS 2 loop, 2 processes", results["ros2_loop_ms"]))
    for title, figures in sections:
        lines.append(f"{title:<34}{'p50 ms':>10}{'p99 ms':>10}")
        lines += [f"  {name:<32}{f['p50']:>10.2f}{f['p99']:>10.2f}" for name, f in figures.items()]
    lines.append("")
    for size, ratios in results.get("int8_speedup", {}).items():
        lines.append(f"INT8 speedup at {size} (p50): {ratios['vs_torch_eager_same_function']}x PyTorch eager on the "
                     f"same function, {ratios['vs_torch_eager_network_alone']}x on the network alone")
    lines.append("")
    from sim2real.bench.mirror_cost import format_rows as mirror_rows

    lines += mirror_rows(results.get("mirror_cost_ms", {}))
    lines.append("")
    for key in ("datagen_images_per_s", "train_images_per_s"):
        lines.append(f"{key:<34}{results[key]:>10.1f}")
    for size, value in results["train_images_per_s_by_input"].items():
        lines.append(f"{'  train img/s @ ' + size + 'x' + size:<34}{value:>10.1f}")
    lines += ["", format_rows(results)]
    return "\n".join(lines)
