"""What every obstacle kind is built from: the ``Obstacle`` record and the ``Kind`` base class.

An ``Obstacle`` is one upright primitive (``box`` or ``cylinder``) resting ``z0`` above the floor;
every backend builds those two. A kind (``box``, ``table``, ...) is a class that samples one
obstacle from the scenario's ``obstacles`` section and expands it into its primitive ``parts``
(a table: four legs and a top). Everything else — the expert's footprint, each backend's geometry,
the report's drawing — follows from the parts unless the kind says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sim2real.contracts.scenario import Obstacles, Scenario

PRIMITIVES = ("box", "cylinder")


@dataclass(frozen=True)
class Obstacle:
    """An upright primitive. ``size`` is the radius (cylinder) or half-extents x, y (box).

    ``shape`` is always a primitive every backend builds; ``kind`` names the class that drew it
    (empty means the same as ``shape``). ``z0`` is the height of its underside above the floor
    (a table top's is the leg length); ``extra`` holds the kind's own numbers (leg radius, ...).
    """

    shape: str
    x: float
    y: float
    yaw: float
    size: tuple[float, float]
    height: float
    kind: str = ""
    z0: float = 0.0
    extra: tuple[float, ...] = ()

    def footprint_radius(self) -> float:
        return self.size[0] if self.shape == "cylinder" else math.hypot(*self.size)

    @property
    def kind_name(self) -> str:
        return self.kind or self.shape

    @property
    def top(self) -> float:
        return self.z0 + self.height

    def local_to_world(self, lx: float, ly: float) -> tuple[float, float]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.x + c * lx - s * ly, self.y + s * lx + c * ly

    def record(self) -> dict:
        """The obstacle as the JSON an evaluation record holds (``from_record`` reads it back)."""
        out = {"kind": self.kind_name, "shape": self.shape, "x": round(self.x, 4), "y": round(self.y, 4),
               "yaw": round(self.yaw, 4), "size": [round(s, 4) for s in self.size], "height": round(self.height, 4)}
        if self.z0:
            out["z0"] = round(self.z0, 4)
        if self.extra:
            out["extra"] = [round(v, 4) for v in self.extra]
        return out

    @classmethod
    def from_record(cls, rec: dict) -> Obstacle:
        return cls(rec["shape"], rec["x"], rec["y"], rec["yaw"], tuple(rec["size"]), rec["height"],
                   rec.get("kind", ""), rec.get("z0", 0.0), tuple(rec.get("extra", ())))


def uniform(rng: np.random.Generator, span) -> float:
    return float(rng.uniform(*span))


def yaw(rng: np.random.Generator, yaw_deg: tuple[float, float]) -> float:
    """A heading from a degree range (the full circle is drawn in radians directly, as it always was)."""
    if tuple(yaw_deg) == (-180.0, 180.0):
        return float(rng.uniform(-math.pi, math.pi))
    return float(rng.uniform(math.radians(yaw_deg[0]), math.radians(yaw_deg[1])))


class Kind:
    """One obstacle kind. Subclasses set ``name`` and implement ``sample``; the registry finds them.

    ``selectable`` kinds may be listed in ``obstacles.shapes``; others (``partition``) come from
    elsewhere in the scenario. ``keys`` are the ``obstacles.*`` keys the kind reads (the Isaac
    mapping lists them as scene randomizers).
    """

    name: ClassVar[str] = ""
    selectable: ClassVar[bool] = True
    keys: ClassVar[tuple[str, ...]] = ()

    def sample(self, ob: Obstacles, half_x: float, half_y: float, rng: np.random.Generator) -> Obstacle:
        """One obstacle of this kind, centred uniformly in ``[-half_x, half_x] x [-half_y, half_y]``."""
        raise NotImplementedError(f"obstacle kind '{self.name}' is not drawn from obstacles.shapes")

    def mean_footprint_m(self, ob: Obstacles) -> float:
        """Expected footprint radius (range midpoints): the scenario's room check uses it."""
        raise NotImplementedError

    def check(self, scenario: Scenario) -> None:
        """Raise ``ValueError('obstacles.<key>: why')`` when the scenario asks for what this kind cannot be."""

    def parts(self, o: Obstacle) -> list[Obstacle]:
        """The primitives every backend builds for ``o``; the expert sweeps the same ones."""
        return [o]

    def semantic_class(self, o: Obstacle) -> str:
        """Label for segmentation-aware backends (Isaac: the prim's semantic class)."""
        return self.name

    def draw(self, ax, o: Obstacle) -> None:
        """Top-down drawing in the evaluation report (matplotlib axes): every part, tops paler."""
        for part in sorted(self.parts(o), key=lambda p: p.z0):
            draw_primitive(ax, part, overhead=part.z0 > 0)


def draw_primitive(ax, o: Obstacle, overhead: bool = False) -> None:
    from matplotlib.patches import Circle, Polygon

    style = {"fc": "none", "ec": "#555", "lw": 0.8, "ls": "--"} if overhead else {"fc": "#b8b8c0", "ec": "#555",
                                                                                     "lw": 0.8}
    if o.shape == "cylinder":
        ax.add_patch(Circle((o.x, o.y), o.size[0], **style))
        return
    hx, hy = o.size
    corners = [o.local_to_world(dx, dy) for dx, dy in ((hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy))]
    ax.add_patch(Polygon(corners, closed=True, **style))
