"""Root cause 7: `deploy --host ssh://…` could not work as installed (case 36).

The docker SDK imports paramiko for ssh:// hosts, so the `deploy` extra must bring it; an
unreachable host must be one clear line (the ssh client's own reason), exit 2.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_models import tiny_model

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("docker")


def test_the_deploy_extra_brings_what_ssh_hosts_need():
    deploy = re.search(r"^deploy = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert deploy and '"paramiko' in deploy.group(1)
    assert importlib.util.find_spec("paramiko") is not None, "install the deploy extra (pip install -e '.[deploy]')"


def test_an_unreachable_ssh_host_is_one_clear_line(tmp_path):
    model = tiny_model(tmp_path / "model", name="model.int8.onnx")
    result = subprocess.run([sys.executable, "-m", "sim2real", "deploy", "--host", "ssh://nobody@127.0.0.1:1",
                             "--model", str(model)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sim2real deploy: error: cannot reach ssh://nobody@127.0.0.1:1 over ssh: ")
    assert "Connection refused" in result.stderr and "paramiko" not in result.stderr
