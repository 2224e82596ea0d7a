"""What a model promises, carried inside the model file, and the checks every load makes.

The exporter writes the contract (preprocessing, camera, actions, the input's and output's names
and shapes, how mirror equivariance is built) as JSON into the ONNX file's ``metadata_props``
under ``METADATA_KEY``, so the file's sha256 covers it, and the same blocks into the manifest
beside it. On load (:func:`verify`) a model is checked, not trusted:

- the manifest must carry the preprocessing, camera and actions blocks, of versions this
  sim2real reads, and the actions must be this runtime's;
- the file must carry the contract, and the manifest's blocks must equal the file's (an edited
  manifest no longer changes what the runtime does: it is refused, naming the edited field);
- the optional ``runtime`` block (the turn hysteresis, :mod:`sim2real.contracts.hysteresis`) must
  be equal in both, or absent from both (a model without it runs without the layer);
- the graph's input must have the contract's channels, height and width, and its output one logit
  per action (the runtime also runs one probe image through the engine, for dimensions the graph
  leaves open).

A TensorRT engine cannot hold metadata: its manifest carries the contract of the ONNX file it was
built from (named by sha256), checked when the engine was built.
"""

from __future__ import annotations

import json
from pathlib import Path

from sim2real.contracts import actions, hysteresis
from sim2real.contracts.camera import CameraContract, CameraError
from sim2real.contracts.preprocessing import CHANNELS, PreprocessSpec

METADATA_KEY = "sim2real.contract"
CONTRACT_VERSION = 1
BLOCKS = ("preprocessing", "camera", "actions")
OPTIONAL_BLOCKS = ("runtime",)
MIRROR = ("exact: logits = 0.5 * (f(x) + swap(f(flip(x)))), f run once on the batch [x; flip(x)]; "
          "an exact left/right tie resolves to left")


class ModelContractError(ValueError):
    """A model whose contract is missing, unreadable, edited or not what its graph computes."""


def build(spec: PreprocessSpec, camera: CameraContract, input_name: str, output_name: str,
          runtime: hysteresis.HysteresisParams = hysteresis.DEFAULT) -> dict:
    """The contract of a model exported for ``spec`` and ``camera``, with the ``runtime`` hysteresis."""
    return {"version": CONTRACT_VERSION, "preprocessing": spec.to_dict(), "camera": camera.to_dict(),
            "actions": actions.spec(), "runtime": hysteresis.runtime_block(runtime),
            "input": {"name": input_name, "shape": ["batch", *spec.input_shape()], "channels": list(CHANNELS)},
            "output": {"name": output_name, "shape": ["batch", len(actions.ACTIONS)]},
            "mirror": MIRROR}


def manifest_blocks(contract: dict) -> dict:
    """The blocks of ``contract`` that its model's manifest repeats."""
    return {block: contract[block] for block in BLOCKS + OPTIONAL_BLOCKS if block in contract}


def runtime_params(manifest: dict, path: Path) -> hysteresis.HysteresisParams:
    """The turn hysteresis of a model's manifest (off without a ``runtime`` block)."""
    try:
        return hysteresis.from_block(manifest.get("runtime"))
    except ValueError as exc:
        raise ModelContractError(f"manifest of {path.name}: {exc}; {_reexport(path)}") from None


def _first_difference(a: object, b: object, path: str) -> tuple[str, object, object] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _reexport(path: Path) -> str:
    return f"re-export it with this sim2real (sim2real export --checkpoint CHECKPOINT --out {path.parent})"


def read_blocks(manifest: dict, path: Path) -> tuple[PreprocessSpec, CameraContract]:
    """The preprocessing and camera of a model's manifest, each validated (one-line errors)."""
    missing = [block for block in BLOCKS if not isinstance(manifest.get(block), dict)]
    if missing:
        raise ModelContractError(f"manifest of {path.name} has no {', '.join(repr(b) for b in missing)} "
                                 f"block{'s' if len(missing) > 1 else ''}: it was edited, or the model comes from "
                                 f"an older sim2real; {_reexport(path)}")
    model_actions = manifest["actions"].get("actions")
    if model_actions != list(actions.ACTIONS):
        raise ModelContractError(f"{path.name}: model actions {model_actions} differ from this runtime's "
                                 f"{list(actions.ACTIONS)}")
    try:
        spec = PreprocessSpec.from_dict(manifest["preprocessing"])
        camera = CameraContract.from_dict(manifest["camera"])
    except (ValueError, TypeError, CameraError) as exc:
        raise ModelContractError(f"manifest of {path.name}: {str(exc).splitlines()[0]}") from None
    runtime_params(manifest, path)
    return spec, camera


def verify(path: str | Path, manifest: dict, embedded: str | dict | None, input_shape: tuple | None,
           output_shape: tuple | None) -> tuple[PreprocessSpec, CameraContract]:
    """Check a model (see the module docstring); return its preprocessing and camera.

    ``embedded`` is the contract inside the file (JSON text, or the dict of an engine manifest),
    ``input_shape`` / ``output_shape`` the graph's, with None (or a name) for an open dimension.
    """
    path = Path(path)
    spec, camera = read_blocks(manifest, path)
    if embedded is None:
        raise ModelContractError(f"{path.name} carries no sim2real contract in its metadata (exported by hand or "
                                 f"by an older sim2real), so its manifest cannot be checked; {_reexport(path)}")
    if isinstance(embedded, str):
        try:
            embedded = json.loads(embedded)
        except json.JSONDecodeError:
            raise ModelContractError(f"{path.name}: the contract in its metadata is not JSON; "
                                     f"{_reexport(path)}") from None
    if not isinstance(embedded, dict) or embedded.get("version") != CONTRACT_VERSION:
        version = embedded.get("version") if isinstance(embedded, dict) else None
        raise ModelContractError(f"{path.name}: its contract version {version!r} is not {CONTRACT_VERSION}; "
                                 f"{_reexport(path)}")
    for block in BLOCKS + OPTIONAL_BLOCKS:
        found = _first_difference(manifest.get(block, "<absent>"), embedded.get(block, "<absent>"), block)
        if found:
            key, said, inside = found
            raise ModelContractError(
                f"manifest of {path.name} says {key} = {said!r}, the model file (covered by its sha256) says "
                f"{inside!r}: the manifest was edited; restore it, or {_reexport(path)}")
    _check_shapes(path, spec, input_shape, output_shape)
    return spec, camera


def _open(dim: object) -> bool:
    return not isinstance(dim, int) or dim <= 0


def _check_shapes(path: Path, spec: PreprocessSpec, input_shape: tuple | None, output_shape: tuple | None) -> None:
    want_in = spec.input_shape()
    if input_shape is not None:
        dims = tuple(input_shape)
        if len(dims) != 4 or any(not _open(d) and d != w for d, w in zip(dims[1:], want_in)):
            raise ModelContractError(f"{path.name}: its input is {list(dims)}, the contract needs [batch, "
                                     f"{want_in[0]} channels {CHANNELS}, {want_in[1]} high, {want_in[2]} wide]")
    if output_shape is not None:
        dims = tuple(output_shape)
        if len(dims) != 2 or (not _open(dims[1]) and dims[1] != len(actions.ACTIONS)):
            raise ModelContractError(f"{path.name}: its output is {list(dims)}, the contract needs [batch, "
                                     f"{len(actions.ACTIONS)}]: one logit per action {list(actions.ACTIONS)}")


def check_probe(path: str | Path, logits_shape: tuple) -> None:
    """The output of one probe image must be (1, len(ACTIONS)) (for dimensions the graph leaves open)."""
    if tuple(logits_shape) != (1, len(actions.ACTIONS)):
        raise ModelContractError(f"{Path(path).name}: one image gives output {list(logits_shape)}, the contract "
                                 f"needs [1, {len(actions.ACTIONS)}]: one logit per action {list(actions.ACTIONS)}")
