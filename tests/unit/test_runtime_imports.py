"""The robot side imports no torch and no simulator; simulators import no torch."""

import subprocess
import sys

import pytest

FORBIDDEN_ON_ROBOT = ("torch", "mujoco", "pybullet")


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in out.strip().split(",")}


@pytest.mark.parametrize("statement", [
    "import sim2real.runtime.policy",
    "import sim2real.runtime.engines.onnxruntime_engine",
    "import sim2real.contracts.preprocessing, sim2real.contracts.scenario, sim2real.contracts.dataset",
    "import sim2real.recordings.validate, sim2real.recordings.ingest, sim2real.recordings.report",
    "import sim2real.calibrate.overlay, sim2real.runtime.shadow",   # calibrate runs where replay does
])
def test_runtime_and_contracts_import_no_torch_or_simulator(statement):
    leaked = _imported_after(statement) & set(FORBIDDEN_ON_ROBOT)
    assert not leaked, f"{statement} imported {leaked}"


def test_simulator_backends_import_no_torch():
    modules = _imported_after("import sim2real.sim.mujoco_backend, sim2real.sim.pybullet_backend, sim2real.sim.expert")
    assert "torch" not in modules


def test_cli_parser_imports_no_service_dependency():
    """Every image builds the full parser; it must not need another image's packages."""
    leaked = _imported_after("from sim2real.cli import build_parser; build_parser()") & {
        "torch", "mujoco", "pybullet", "redis", "docker", "rclpy", "onnxruntime"}
    assert not leaked, f"building the CLI parser imported {leaked}"
