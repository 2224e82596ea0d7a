"""Simulator A on Isaac Sim: the scenario's World built on a USD stage, depth from Replicator.

Runs only inside the isaac-datagen image (Isaac Sim 4.5 or later, ``pip install isaacsim`` or the
``nvcr.io/nvidia/isaac-sim`` container) on an RTX GPU. Importing this module elsewhere raises
ImportError naming ``isaacsim``, which the backend registry reports as "not installed here".

What it does, per the current APIs:

- ``isaacsim.SimulationApp({"headless": True})`` is started once per process (it must exist before
  any ``omni.*`` import) and kept for the life of the process; ``close()`` of a backend does not
  stop it.
- ``load(world)`` authors ``mapping.scene_description`` with ``pxr.UsdGeom`` (``Cube`` /
  ``Cylinder`` prims, translate / orient / scale ops, a semantic label per prim) under
  ``/World/sim2real``, replacing the previous scene (a ``sim2real:kind`` string attribute records
  what each prim stands for).
- ``render_ideal(pose, camera)`` writes ``mapping.camera_spec`` onto one ``UsdGeom.Camera`` prim
  (transform, focal length, apertures, clipping range), steps Replicator once
  (``rep.orchestrator.step``) and reads the ``distance_to_image_plane`` annotator attached to a
  render product of the camera at the image's resolution (one per drawn size, made on first use):
  z-depth in metres, ``inf`` → NaN.
- ``render_depth`` applies the same numpy sensor model as every other backend, so shards written
  through this backend have the same format and conventions as MuJoCo's.

Use ``--workers 1`` with this backend: each worker process would start its own Isaac Sim on the GPU.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("isaacsim") is None:   # keep the registry's "not installed here" message
    raise ImportError("Isaac Sim is not installed (pip install isaacsim, or the isaac-datagen image)",
                      name="isaacsim")

import numpy as np

from sim2real.contracts.scenario import Scenario
from sim2real.sim.base import SimBackend
from sim2real.sim.isaac import mapping
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample, Pose2D, World

RT_SUBFRAMES = 1          # depth needs no path-tracing accumulation

_APP = None


def simulation_app():
    """The process's one Isaac Sim application (headless), started on first use."""
    global _APP
    if _APP is None:
        from isaacsim import SimulationApp

        _APP = SimulationApp({"headless": True})
    return _APP


class IsaacBackend(SimBackend):
    """Render-only backend on Isaac Sim Replicator (RTX)."""

    name = "isaac"
    can_drive = False

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        mapping.check_supported(scenario)
        self._app = simulation_app()
        import omni.replicator.core as rep
        import omni.usd
        from pxr import UsdGeom

        self._rep = rep
        self._usd_context = omni.usd.get_context()
        self._usd_context.new_stage()
        self._stage = self._usd_context.get_stage()
        UsdGeom.SetStageUpAxis(self._stage, UsdGeom.Tokens.z)
        UsdGeom.SetStageMetersPerUnit(self._stage, 1.0)
        self._camera = UsdGeom.Camera.Define(self._stage, mapping.CAMERA_PATH)
        self._camera_xform = self._camera.AddTransformOp()
        self._products: dict[tuple[int, int], tuple] = {}   # resolution → (render product, annotator)
        self._loaded = False

    def _annotator(self, resolution: tuple[int, int]):
        """The depth annotator of a render product at ``resolution`` (one per drawn image size)."""
        if resolution not in self._products:
            product = self._rep.create.render_product(mapping.CAMERA_PATH, resolution)
            annotator = self._rep.AnnotatorRegistry.get_annotator(mapping.DEPTH_ANNOTATOR)
            annotator.attach([product.path])
            self._products[resolution] = (product, annotator)
        return self._products[resolution][1]

    def load(self, world: World) -> None:
        from pxr import Gf, Sdf, UsdGeom

        stage = self._stage
        if stage.GetPrimAtPath(mapping.ROOT):
            stage.RemovePrim(mapping.ROOT)
        UsdGeom.Xform.Define(stage, mapping.ROOT)
        for spec in mapping.scene_description(self.scenario, world).prims:
            geom = (UsdGeom.Cube if spec.type == "Cube" else UsdGeom.Cylinder).Define(stage, spec.path)
            for name, value in spec.attributes.items():
                if name == "size":
                    geom.CreateSizeAttr(value)
                elif name == "radius":
                    geom.CreateRadiusAttr(value)
                elif name == "height":
                    geom.CreateHeightAttr(value)
                elif name == "axis":
                    geom.CreateAxisAttr(value)
            geom.AddTranslateOp().Set(Gf.Vec3d(*spec.translate))
            geom.AddOrientOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Quatd(spec.orient[0], *spec.orient[1:]))
            geom.AddScaleOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*spec.scale))
            # What the scenario asked for (box, pole, wall, partition, ...), for whoever inspects the stage.
            geom.GetPrim().CreateAttribute("sim2real:kind", Sdf.ValueTypeNames.String).Set(spec.semantic_class)
        self._loaded = True

    def render_ideal(self, pose: Pose2D, camera: CameraSample) -> np.ndarray:
        from pxr import Gf

        if not self._loaded:
            raise RuntimeError("IsaacBackend.render_depth called before load(world)")
        spec = mapping.camera_spec(self.scenario, pose, camera)
        self._camera_xform.Set(Gf.Matrix4d(*[v for row in spec.transform for v in row]))
        self._camera.GetFocalLengthAttr().Set(spec.focal_length)
        self._camera.GetHorizontalApertureAttr().Set(spec.horizontal_aperture)
        self._camera.GetVerticalApertureAttr().Set(spec.vertical_aperture)
        self._camera.GetClippingRangeAttr().Set(Gf.Vec2f(*spec.clipping_range))
        annotator = self._annotator(spec.resolution)
        self._rep.orchestrator.step(rt_subframes=RT_SUBFRAMES, delta_time=0.0, pause_timeline=True)
        depth = np.asarray(annotator.get_data(), dtype=np.float32).reshape(spec.resolution[1], spec.resolution[0])
        far = spec.clipping_range[1]
        with np.errstate(invalid="ignore"):
            depth = np.where(np.isfinite(depth) & (depth > 0) & (depth <= far), depth, np.nan)
        return depth.astype(np.float32)

    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        return apply_sensor_model(self.render_ideal(pose, camera), self.scenario.camera, camera, rng)

    def close(self) -> None:
        """Detach the annotators and drop the render products; the Isaac Sim app lives on."""
        for product, annotator in self._products.values():
            try:
                annotator.detach()
                product.destroy()
            except Exception:
                pass
        self._products.clear()
