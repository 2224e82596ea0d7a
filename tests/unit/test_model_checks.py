"""Models are checked, not trusted: the adversarial cases 16, 18-28 and 31 of the real-sensor contract.

Each bad model must end as one line ``sim2real <verb>: error: ...`` and exit code 2, before any
work; case 16 (a checkpoint with a wrong head) is in ``test_export.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers_models import tiny_contract, tiny_model
from onnx import TensorProto, helper, numpy_helper
from sim2real.cli import main
from sim2real.contracts import model_contract
from sim2real.contracts.manifest import new_manifest, read_manifest, write_manifest
from sim2real.contracts.model_contract import ModelContractError
from sim2real.export.equivariance import embed_contract
from sim2real.runtime.policy import ModelPolicy
from sim2real.runtime.replay import record_images
from sim2real.runtime.ros_image import encode_depth


def forged(folder: Path, channels: int = 2, height: int = 24, width: int = 32, outputs: int = 3,
           contract: bool = True, name: str = "model.onnx") -> Path:
    """A Flatten → Gemm model of the given input and output, with the tiny contract (2 channels, 24x32)
    inside and in a manifest that matches the file: what a hand-made or mislabelled model looks like."""
    n = channels * height * width
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["depth"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"])], "forged",
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", channels, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[numpy_helper.from_array(np.full((n, outputs), 1e-3, np.float32), "W"),
                     numpy_helper.from_array(np.arange(outputs, dtype=np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec, camera = tiny_contract()
    built = model_contract.build(spec, camera, "depth", "logits")
    if contract:
        model = embed_contract(model, built)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path))
    write_manifest(path, new_manifest("onnx-model", **model_contract.manifest_blocks(built)))
    return path


def edit_manifest(path: Path, edit) -> Path:
    """Edit the manifest beside ``path`` (the file itself, and so its sha256, stays the same)."""
    manifest = read_manifest(path)
    edit(manifest)
    (path.parent / f"{path.name}.manifest.json").write_text(json.dumps(manifest))
    return path


def one_line_exit_2(capsys, argv: list[str], verb: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sim2real {verb}: error: "), err
    return err.strip()


@pytest.mark.parametrize("case, make, message", [
    (18, lambda d: forged(d, outputs=1), r"its output is \['batch', 1\], the contract needs \[batch, 3\]"),
    (19, lambda d: forged(d, outputs=5), r"its output is \['batch', 5\]"),
    (21, lambda d: forged(d, channels=3), r"its input is \['batch', 3, 24, 32\], the contract needs \[batch, 2 "),
    (22, lambda d: forged(d, height=24, width=16), r"its input is \['batch', 2, 24, 16\]"),
    (0, lambda d: forged(d, contract=False), "carries no sim2real contract in its metadata .* re-export it"),
])
def test_a_model_whose_graph_does_not_fit_its_contract_is_refused(tmp_path, case, make, message):
    with pytest.raises(ModelContractError, match=message):
        ModelPolicy(make(tmp_path))


def test_a_probe_image_must_give_one_logit_per_action():
    """For graphs that leave the output's size open, one image runs through the engine on load."""
    model_contract.check_probe("m.onnx", (1, 3))
    with pytest.raises(ModelContractError, match=r"m.onnx: one image gives output \[1, 5\]"):
        model_contract.check_probe("m.onnx", (1, 5))


@pytest.mark.parametrize("case, edit, message", [
    (20, lambda m: m["preprocessing"].update(max_range_m=50.0),
     r"manifest of tiny.onnx says preprocessing.max_range_m = 50.0, the model file \(covered by its sha256\) says "
     r"5.0: the manifest was edited; restore it, or re-export"),
    (23, lambda m: m["preprocessing"].update(width=64), r"says preprocessing.width = 64, the model file .* says 32"),
    (24, lambda m: m["preprocessing"].update(width=96.5), "preprocessing width must be a whole number of pixels"),
    (25, lambda m: m.pop("preprocessing"), "manifest of tiny.onnx has no 'preprocessing' block"),
    (0, lambda m: m["camera"].update(hfov_deg=60.0), "says camera.hfov_deg = 60.0"),
    (0, lambda m: m.update(preprocessing={"size": 96, "min_range_m": 0.1, "max_range_m": 5.0, "version": 1}),
     "preprocessing version 1 .* retrain and re-export"),
])
def test_an_edited_manifest_is_refused_naming_the_field(tmp_path, case, edit, message):
    model = edit_manifest(tiny_model(tmp_path), edit)
    with pytest.raises(ModelContractError, match=message):
        ModelPolicy(model)


def test_eval_refuses_a_bad_model_before_any_episode_even_with_workers(tmp_path, capsys):
    """Cases 18-26: one line and exit 2 from the parent, never a traceback from the pool."""
    for index, model in enumerate([forged(tmp_path / "one", outputs=1),
                                   edit_manifest(tiny_model(tmp_path / "edited"),
                                                 lambda m: m["preprocessing"].update(max_range_m=50.0))]):
        out = tmp_path / f"eval{index}.json"
        err = one_line_exit_2(capsys, ["eval", "--model", str(model), "--scenario", "tiny", "--episodes", "4",
                                       "--workers", "2", "--json", str(out)], "eval")
        assert ("its output is ['batch', 1]" in err) if index == 0 else ("preprocessing.max_range_m = 50.0" in err)
        assert not out.exists()


def test_replay_refuses_an_edited_or_incomplete_manifest(tmp_path, capsys):
    """Cases 27 and 28: no actions are written from a manifest that does not match its model."""
    bag = tmp_path / "bag"
    record_images(bag, [(1, encode_depth(np.full((48, 64), 2.0, np.float32)))])
    edited = edit_manifest(tiny_model(tmp_path / "a"), lambda m: m["preprocessing"].update(min_range_m=0.5))
    missing = edit_manifest(tiny_model(tmp_path / "b"), lambda m: m.pop("preprocessing"))
    for model, message in ((edited, "preprocessing.min_range_m = 0.5"), (missing, "no 'preprocessing' block")):
        out = tmp_path / "actions.jsonl"
        err = one_line_exit_2(capsys, ["replay", "--bag", str(bag), "--model", str(model), "--out", str(out)],
                              "replay")
        assert message in err and not out.exists()


def test_serve_refuses_a_manifest_without_preprocessing(tmp_path):
    """Case 31: the node does not start; one line on stderr, exit 2."""
    pytest.importorskip("rclpy")
    from helpers_ros import ros_environment

    model = edit_manifest(tiny_model(tmp_path), lambda m: m.pop("preprocessing"))
    with ros_environment(tmp_path / "roslog", domain_base=160):
        proc = subprocess.run([sys.executable, "-m", "sim2real.cli", "serve", "--model", str(model)],
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"sim2real serve: error: manifest of tiny.onnx has no 'preprocessing' block: it was edited, "
                      f"or the model comes from an older sim2real; re-export it with this sim2real "
                      f"(sim2real export --checkpoint CHECKPOINT --out {model.parent})"]
