"""Plumbing of the mirror-equivariance cost in `sim2real bench` (figures are the bench's, not asserted)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def test_mirror_cost_times_the_network_and_its_mirror_equivariant_graph():
    from sim2real.bench.mirror_cost import bench_mirror_cost, format_rows

    result = bench_mirror_cost(repeats=3, shapes=((32, 24),))
    figures = result["32x24"]
    assert set(figures) == {"fp32", "fp32_mirror", "int8", "int8_mirror", "cost_p50"}
    for name in ("fp32", "fp32_mirror", "int8", "int8_mirror"):
        assert figures[name]["n"] == 3 and 0 < figures[name]["p50"] <= figures[name]["p99"]
    assert set(figures["cost_p50"]) == {"fp32", "int8"}
    rows = format_rows(result)
    assert len(rows) == 3 and rows[1].strip().startswith("32x24 fp32")
