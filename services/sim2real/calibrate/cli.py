"""The ``calibrate`` verb: fit the scenario's sensor model to a recording (``register`` adds it)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _calibrate(args: argparse.Namespace) -> int:
    from sim2real.calibrate.overlay import calibrate, main_report

    report = calibrate(Path(args.bag), Path(args.out), args.scenario, image_topic=args.image_topic,
                       camera_info_topic=args.camera_info_topic, spread=args.spread,
                       json_out=Path(args.json) if args.json else None, seed=args.seed,
                       max_frames=args.max_frames)
    print(main_report(report))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "calibrate", help="fit the scenario's sensor model (noise) to a recording; write a scenario overlay",
        description="Fit the depth sensor model (hole fraction, holes at depth edges, stereo shadow, sigma(z), "
                    "quantisation, effective min and max range) to the depth images and CameraInfo of a "
                    "rosbag2 recording (MCAP or sqlite3), and write a scenario overlay over --scenario that "
                    "any verb takes as its --scenario. A static stretch in the recording (the camera still "
                    "for a few frames) gives sigma(z) from the temporal spread; without one, from plane fits.")
    p.add_argument("--bag", required=True, help="rosbag2 folder, or a single .mcap / .db3 file")
    p.add_argument("--out", required=True, help="the overlay YAML to write (e.g. calibrated.yaml)")
    p.add_argument("--scenario", default="default", help="the base scenario, built-in name or YAML path "
                                                          "(default %(default)s)")
    p.add_argument("--image-topic", default="/camera/depth/image_raw", help="depth images (default %(default)s)")
    p.add_argument("--camera-info-topic", default="/camera/depth/camera_info",
                   help="the depth camera's CameraInfo (default %(default)s)")
    p.add_argument("--spread", type=float, default=0.25,
                   help="datagen draws each fitted value within ± this share of it (default %(default)s; 0: "
                        "exactly the fitted value)")
    p.add_argument("--max-frames", type=int, default=200,
                   help="fit at most this many frames, in runs of 10 consecutive ones spread over the recording "
                        "(default %(default)s)")
    p.add_argument("--json", help="also write the fit's report here: each value and how it was found")
    p.add_argument("--seed", type=int, default=0, help="random seed for subsampling (default %(default)s)")
    p.set_defaults(func=_calibrate)
