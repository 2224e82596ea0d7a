"""A policy that only drives forward, and a tiny-scenario episode of it that ends in a collision."""

from __future__ import annotations

from sim2real.contracts.actions import FORWARD
from sim2real.contracts.scenario import load_scenario
from sim2real.eval.evaluate import run_episode
from sim2real.eval.policies import Policy


class ForwardPolicy(Policy):
    kind = "forward"

    def act(self, depth, pose, world):
        return FORWARD


def forward_episode(index: int, seed: int = 3) -> dict:
    """Episode ``index`` of ``tiny`` stretched to 20 s, driving straight until it hits something."""
    from sim2real.sim.pybullet_backend import PybulletBackend

    scenario = load_scenario("tiny")
    scenario = scenario.model_copy(update={"episode": scenario.episode.model_copy(update={"duration_s": 20.0})})
    backend = PybulletBackend(scenario)
    try:
        return run_episode(backend, ForwardPolicy(), scenario, seed=seed, index=index)
    finally:
        backend.close()
