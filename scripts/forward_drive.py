#!/usr/bin/env python3
"""Benchmark (not a test): the demo drive continued until the robot is ``--forward`` m ahead.

Runs ``mickey-ros demo`` (the bundled model, replayed as the node runs it) on the demo's seed with
``--seconds`` chosen so that the last frame is ``--forward`` metres along the drive, then compares
the estimated forward motion (``z`` of the pose in the keyframe camera) of the last frame, and of
the last frame the quality gate published, with the ground truth of the same replay
(``frames.csv`` and ``poses.gt.txt``).

Example (docs/demo_model.md; the target: within 20 % at 2.5 m)::

    python scripts/forward_drive.py --forward 2.5 --workdir /tmp/forward_drive
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from mickey_ros.synth.rosbag import plan_robot_drive


def seconds_to_reach(forward_m: float, seed: int, size_wh: tuple[int, int],
                     rate_hz: float) -> float:
    """Bag length whose last frame (at ``(n - 1) / rate``) is ``forward_m`` along the drive
    (``RobotPath.time_at``, rounded up to the next frame)."""
    path = plan_robot_drive(seed, size_wh).path
    if not 0 < forward_m <= path.length_m:
        raise ValueError(f"--forward must be in (0, {path.length_m:.2f}] m, the length of the "
                         f"seed-{seed} drive before it turns back; got {forward_m}")
    t = path.time_at(forward_m)
    frames = math.ceil(t * rate_hz - 1e-9) + 1
    return frames / rate_hz


def stamp_ns(text: str) -> int:
    """Exact nanoseconds of a decimal seconds string (a float64 loses ns at 1.7e9 s)."""
    sec, _, frac = text.partition(".")
    return int(sec) * 10**9 + int((frac + "000000000")[:9])


def read_tum(path: Path) -> dict[int, np.ndarray]:
    """``{stamp_ns: (3,) translation}`` of a TUM trajectory (stamp in seconds)."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            v = line.split()
            rows[stamp_ns(v[0])] = np.array([float(x) for x in v[1:4]])
    return rows


def read_estimates(path: Path) -> dict[int, tuple[np.ndarray, bool]]:
    """``{stamp_ns: ((3,) translation, published)}`` of the valid rows of the replay CSV."""
    with path.open() as f:
        return {int(r["stamp_ns"]): (np.array([float(r[k]) for k in ("tx", "ty", "tz")]),
                                     r["published"] == "1")
                for r in csv.DictReader(f) if r["valid"] == "1"}


def forward_summary(workdir: Path) -> dict[str, float]:
    """Estimated vs true forward motion (keyframe camera z) at the end of the drive.

    ``last_valid``: the last frame's estimate whether or not the quality gate published it (the
    motion the model perceives); ``last_published``: the last pose the node would publish.
    """
    est, gt = read_estimates(workdir / "frames.csv"), read_tum(workdir / "poses.gt.txt")
    out: dict[str, float] = {}
    for name, stamps in (("last_valid", [s for s in est if s in gt]),
                         ("last_published", [s for s in est if s in gt and est[s][1]])):
        if not stamps:
            continue
        last = max(stamps)
        t_est, t_gt = est[last][0], gt[last]
        out.update({f"{name}_time_s": (last - min(gt)) / 1e9,
                    f"{name}_true_forward_m": float(t_gt[2]),
                    f"{name}_estimated_forward_m": float(t_est[2]),
                    f"{name}_ratio": float(t_est[2] / t_gt[2]),
                    f"{name}_translation_error_m": float(np.linalg.norm(t_est - t_gt))})
    if not out:
        raise SystemExit(f"no valid estimate with ground truth in {workdir}/frames.csv")
    return out


def main(argv: list[str] | None = None) -> int:
    """Render and replay the longer drive, print the forward-motion figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", type=float, default=2.5, help="metres (default 2.5)")
    parser.add_argument("--seed", type=int, default=0, help="drive seed (the demo's: 0)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate, Hz")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mickey_forward_drive"))
    args = parser.parse_args(argv)
    seconds = seconds_to_reach(args.forward, args.seed, (320, 240), args.rate)
    cmd = [sys.executable, "-m", "mickey_ros.cli.main", "demo", "--seconds", f"{seconds:g}",
           "--rate", f"{args.rate:g}", "--seed", str(args.seed), "--workdir", str(args.workdir),
           "--no-progress"]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    print(json.dumps({"seconds": seconds, **forward_summary(args.workdir)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
