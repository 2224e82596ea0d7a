"""Settings for every test."""

import pytest


@pytest.fixture(autouse=True)
def _private_expert_cache(tmp_path, monkeypatch):
    """Each test starts with an empty expert-result cache of its own, never the user's ~/.cache."""
    monkeypatch.setenv("SIM2REAL_CACHE_DIR", str(tmp_path / "sim2real-cache"))
