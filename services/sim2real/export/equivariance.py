"""Mirror equivariance by construction, and the contract written into the model file.

``mirror_equivariant(core)`` wraps a network ``f`` (input ``(N, C, H, W)``, logits ``(N, A)``) so
that the exported graph computes::

    g(x) = 0.5 * (f(x) + P f(flip(x)))        flip: the last axis reversed, P: left ↔ right

by running ``f`` once on the batch ``[x; flip(x)]`` and combining the two halves. For a mirrored
image, ``g(flip(x)) = 0.5 * (f(flip(x)) + P f(x))`` holds the same two products as ``P g(x)``,
added in the other order, and IEEE addition is commutative: the mirrored image gives exactly the
mirrored logits, in float and in INT8, as long as the engine computes an image identically at
either half of the batch (``tests/unit/test_export.py`` checks ONNX Runtime's FP32 and both INT8
forms, one and two threads, optimised and not). A second copy of ``f`` would not do: ONNX Runtime
optimises twin nodes differently in the symmetric INT8 form, and TensorRT may pick different
kernels for them.

An image that is its own mirror gets ``left == right`` exactly; the runtime resolves that tie to
LEFT (as the expert does when both sides are equally free) and reports it (``contracts.actions``).

``embed_contract`` writes the model's contract (preprocessing, camera, actions, input and output)
as JSON into the ONNX file's ``metadata_props``, where the file's sha256 covers it.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sim2real.contracts import actions
from sim2real.contracts.model_contract import METADATA_KEY

_PREFIX = "sim2real_mirror_"


def mirror_equivariant(core: onnx.ModelProto) -> onnx.ModelProto:
    """``core`` (one input, one output of ``len(ACTIONS)`` logits) wrapped to be exactly mirror-equivariant."""
    graph = core.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError(f"the network must have one input and one output, got {len(graph.input)} and "
                         f"{len(graph.output)}")
    source, logits = graph.input[0].name, graph.output[0].name
    both, out = _PREFIX + "batch", _PREFIX + "logits"
    body = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(both if name == source else name for name in node.input)
        del copy.output[:]
        copy.output.extend(out if name == logits else name for name in node.output)
        body.append(copy)
    p = _PREFIX
    nodes = [
        helper.make_node("Slice", [source, p + "start", p + "end", p + "axis", p + "step"], [p + "flipped"],
                         name=p + "flip"),
        helper.make_node("Concat", [source, p + "flipped"], [both], axis=0, name=p + "batch"),
        *body,
        helper.make_node("Split", [out], [p + "direct", p + "mirrored"], axis=0, name=p + "split"),
        helper.make_node("Gather", [p + "mirrored", p + "swap"], [p + "swapped"], axis=1, name=p + "swap"),
        helper.make_node("Add", [p + "direct", p + "swapped"], [p + "sum"], name=p + "sum"),
        helper.make_node("Mul", [p + "sum", p + "half"], [logits], name=p + "mean"),
    ]
    constants = [
        numpy_helper.from_array(np.array([-1], np.int64), p + "start"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), p + "end"),
        numpy_helper.from_array(np.array([-1], np.int64), p + "axis"),
        numpy_helper.from_array(np.array([-1], np.int64), p + "step"),
        numpy_helper.from_array(np.array(actions.MIRROR, np.int64), p + "swap"),
        numpy_helper.from_array(np.array(0.5, np.float32), p + "half"),
    ]
    wrapped = helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output),
                                initializer=list(graph.initializer) + constants,
                                value_info=[v for v in graph.value_info if v.name not in (logits,)])
    model = helper.make_model(wrapped, opset_imports=list(core.opset_import), producer_name=core.producer_name,
                              producer_version=core.producer_version)
    model.ir_version = core.ir_version
    onnx.checker.check_model(model)
    return model


def embed_contract(model: onnx.ModelProto, contract: dict) -> onnx.ModelProto:
    """``model`` with ``contract`` (JSON) in its metadata_props under ``METADATA_KEY``."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    helper.set_model_props(model, {**dict(keep), METADATA_KEY: json.dumps(contract, sort_keys=True)})
    return model

