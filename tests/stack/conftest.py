"""Shared pieces of the stack tests: a Docker engine (started when none runs), the five CPU images.

Where Docker cannot run, the stack tests are skipped, and the end of the test run says so in a
banner that cannot be missed; under CI (CI=true) they fail instead. SIM2REAL_STACK=0 skips them
on purpose (ignored under CI). Timings of each stage are printed at the end as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from stackhelpers import (
    BUILT_FROM,
    IMAGES,
    NOT_RUN,
    PREFIX,
    TAG,
    TIMINGS,
    cannot_run,
    run,
    under_ci,
)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """A Docker engine that answers, and `docker compose`; started by scripts/docker-engine.sh."""
    if os.environ.get("SIM2REAL_STACK", "") == "0" and not under_ci():
        cannot_run("SIM2REAL_STACK=0 was set")
    start = time.monotonic()
    try:
        out = run(["bash", "scripts/docker-engine.sh"], timeout=900)
    except subprocess.TimeoutExpired:
        cannot_run("scripts/docker-engine.sh did not finish within 15 minutes")
    TIMINGS["docker engine check (and start)"] = time.monotonic() - start
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        cannot_run(f"Docker cannot run here ({lines[-1] if lines else 'scripts/docker-engine.sh failed'})")


@pytest.fixture(scope="session")
def stack_images(docker_ready) -> dict[str, str]:
    """The CPU flavour of all five images (local debootstrap base, wheelhouse, --no-index installs)."""
    start = time.monotonic()
    BUILT_FROM["commit"] = run(["git", "rev-parse", "HEAD"], timeout=30).stdout.strip() or "unknown"
    out = run(["bash", "scripts/build-images.sh", "--flavour", "cpu", "--prefix", PREFIX, "--tag", TAG], timeout=3000)
    TIMINGS["base + wheelhouse + 5 image builds"] = time.monotonic() - start
    for line in out.stderr.splitlines():
        if line.startswith(("[build-images] built", "[build-base] rootfs cached", "[wheelhouse] ")):
            print(line, file=sys.stderr)
    if out.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed:\n{out.stderr[-4000:]}", pytrace=False)
    return {name: f"{PREFIX}{name}:{TAG}" for name in IMAGES}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TIMINGS:
        terminalreporter.section("stack test timings")
        for stage, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{stage:<45} {seconds:7.1f} s")
    if NOT_RUN:
        bar = "!" * 78
        terminalreporter.write_line("")
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line("!!  THE STACK TEST DID NOT RUN: the images, compose profiles and deploy are", red=True, bold=True)
        terminalreporter.write_line("!!  UNTESTED in this run.", red=True, bold=True)
        for reason in NOT_RUN:
            terminalreporter.write_line(f"!!  reason: {reason}", red=True, bold=True)
        terminalreporter.write_line("!!  (under CI, with CI=true, this is a failure)", red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)
