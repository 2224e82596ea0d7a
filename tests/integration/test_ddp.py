"""Data-parallel training through torchrun: two CPU processes on the Gloo backend, on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from helpers_data import make_toy_dataset
from sim2real.contracts.manifest import read_manifest
from sim2real.train.trainer import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this PyTorch has no Gloo backend")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_processes_train_one_checkpoint(tmp_path):
    data = make_toy_dataset(tmp_path / "data", count=120)
    out = tmp_path / "run"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "sim2real", "train", "--data", str(data), "--out", str(out), "--arch", "resnet10",
               "--epochs", "2", "--batch-size", "32", "--input-size", "32", "--threads", "1", "--no-tensorboard"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines == [json.dumps({"checkpoint": str(out / "checkpoint.pt")})], "only rank 0 reports"

    _, manifest = load_checkpoint(out / "checkpoint.pt")
    assert manifest["training"]["world_size"] == 2 and manifest["training"]["backend"] == "gloo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["val_images"] == 12  # both ranks' shares
    assert len(metrics["history"]) == 2 and not (out / "last.pt").exists()
    assert read_manifest(out / "checkpoint.pt")["train_config"]["batch_size"] == 32
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "checkpoint.pt.manifest.json",
                                                     "confusion_matrix.png", "metrics.json"]
