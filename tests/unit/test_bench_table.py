"""`make bench`'s table names the machine and reports INT8 against PyTorch at both input sizes."""

from sim2real import machine
from sim2real.bench.run import format_table, int8_speedup


def figures(**p50):
    return {name: {"p50": value, "p99": value * 1.5} for name, value in p50.items()}


def test_speedup_is_against_the_same_function_and_the_network_alone():
    row = figures(torch_eager_fp32=10.0, torch_eager_fp32_mirrored=20.0, onnxruntime_int8=4.0)
    assert int8_speedup(row) == {"vs_torch_eager_same_function": 5.0, "vs_torch_eager_network_alone": 2.5}


def test_table_names_the_machine_and_both_input_sizes():
    inference = figures(torch_eager_fp32=10.0, torch_eager_fp32_mirrored=20.0, onnxruntime_fp32=8.0,
                        onnxruntime_int8=4.0, onnxruntime_int8_trt_form=9.0)
    results = {"machine": {**machine.describe(), "score": {"fp32_gflops": 50.0, "int8_gops": 90.0}},
               "inference_ms": inference, "inference_ms_128": inference,
               "int8_speedup": {"224x126": int8_speedup(inference), "128x72": int8_speedup(inference)},
               "onnxruntime_session_ms": figures(**{"1_thread": 4.0, "2_threads": 3.0}),
               "ros2_loop_ms": figures(chapter_baseline=15.0, sim2real=5.0),
               "datagen_images_per_s": 300.0, "train_images_per_s": 30.0,
               "train_images_per_s_by_input": {"128": 100.0, "224": 30.0},
               "eval_episodes": 4, "eval_scenario": "default", "eval_policy": "expert",
               "eval_wall_s": {"1": 10.0}, "eval_steps_per_s_by_workers": {"1": 100.0}}
    table = format_table(results)
    assert machine.cpu()["isa"] in table.splitlines()[0] and str(machine.cpu()["cores"]) in table.splitlines()[0]
    assert "inference 224x126" in table and "inference 128x72" in table
    assert "INT8 speedup at 224x126 (p50): 5.0x" in table and "INT8 speedup at 128x72 (p50): 5.0x" in table
    assert "2_threads" in table and "sim2real" in table
