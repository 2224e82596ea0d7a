"""The verbs for recordings: `sim2real validate` and `sim2real ingest`.

Their flags are derived from their settings dataclasses (:mod:`sim2real.settings`); bad input
raises ValueError / FileNotFoundError (one line, exit 2), a failed gate returns 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from sim2real import settings as settings_mod


def _validate(args: argparse.Namespace) -> int:
    from sim2real.runtime.cli import _node_threads

    _node_threads()
    from sim2real.recordings.validate import ValidateSettings, summary_line, validate

    settings = settings_mod.from_namespace(ValidateSettings, args)
    result = validate(settings)
    first = result["models"][0]
    print(json.dumps({"agreement": first["agreement"]["value"], "agreement_ci95": first["agreement"]["ci95"],
                      "unsafe_rate": first["unsafe_rate"]["value"], "frames": result["frames"]["moving"],
                      **({"agreement_difference": result["comparison"]["agreement_difference"]}
                         if "comparison" in result else {}),
                      "passed": result["gate"]["passed"]}))
    print(f"sim2real validate: {summary_line(result)}", file=sys.stderr)
    for failure in result["gate"]["failures"]:
        print(f"sim2real validate: gate failed: {failure}", file=sys.stderr)
    return 0 if result["gate"]["passed"] else 1


def _ingest(args: argparse.Namespace) -> int:
    from sim2real.recordings.ingest import IngestSettings, ingest

    manifest = ingest(settings_mod.from_namespace(IngestSettings, args))
    print(json.dumps({"out": args.out, "images": manifest["count"], "per_class": manifest["per_class"],
                      "shards": len(manifest["shards"])}))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add ``validate`` and ``ingest`` to the sub-parsers of the main ``sim2real`` parser."""
    from sim2real.recordings.ingest import IngestSettings
    from sim2real.recordings.validate import ValidateSettings

    p = verbs.add_parser(
        "validate", help="models against the driver's commands in rosbag2 recordings (agreement, unsafe rate)",
        description="Run one model (or two, paired) through the node's pipeline over the depth images of rosbag2 "
                    "recordings and compare its commands with the driver's recorded ones: confusion matrix, "
                    "agreement and unsafe rate with 95 % block-bootstrap intervals, mirror consistency, command "
                    "flips per second, per-stage latency. Exit 1 when a --min-agreement / --max-unsafe gate fails.")
    settings_mod.add_arguments(p, ValidateSettings)
    p.set_defaults(func=_validate)

    p = verbs.add_parser(
        "ingest", help="turn rosbag2 recordings into a dataset (validate's labels, the bags' sha256 in the lineage)",
        description="Write the depth images of rosbag2 recordings, labelled by the driver's commands as validate "
                    "labels them, in the project's dataset format (stopped and excluded stretches left out). "
                    "Atomic and resumable like datagen.")
    settings_mod.add_arguments(p, IngestSettings)
    p.set_defaults(func=_ingest)
