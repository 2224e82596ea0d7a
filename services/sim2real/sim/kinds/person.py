"""``person``: a moving obstacle of ``obstacles.people``, an upright cylinder. It is placed and moved
by ``sim.people``, not drawn from ``obstacles.shapes``."""

from __future__ import annotations

from sim2real.sim.kinds.base import Kind


class Person(Kind):
    name = "person"
    selectable = False

    def draw(self, ax, o) -> None:
        from matplotlib.patches import Circle

        ax.add_patch(Circle((o.x, o.y), o.size[0], fc="#e0a040", ec="#8a5a10", lw=0.8, alpha=0.8))
