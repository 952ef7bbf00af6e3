r"""Static int8 quantisation of an exported file, calibrated on rendered images (issue 30).

ONNX Runtime's ``quantize_static`` (QDQ, int8 per-channel weights, uint8 activations with
min/max ranges calibrated once on representative images instead of per call) of the MatMul
layers, the same layers as ``--quantize-linear``'s dynamic file. The calibration images are the
images of a ``mickey-ros synth pairs`` folder (not the benchmark's test pair), cropped to
multiples of 14. Then one thread, interleaved: live-frame network time of the fp32, dynamic
int8 and static int8 files on the benchmark's test image, and each file's output error against
the fp32 file.

    .venv/bin/mickey-ros synth pairs --out /tmp/perf/calib --count 4 --size 378x252 --seed 3000
    OMP_NUM_THREADS=1 .venv/bin/python scripts/int8_static_cpu.py --calib /tmp/perf/calib \
        --fp32 /tmp/mickey_backends/mickey_vitl14.onnx --out /tmp/mickey_backends/report_int8.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mickey_ros.estimator.bench import _test_images
from mickey_ros.estimator.export import ONNX_INPUT, ONNX_OUTPUTS, relative_errors
from mickey_ros.synth.pairs import read_pair

PATCH = 14


def _network_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H', W') float32 in [0, 1], cropped top-left to x14."""
    H, W = rgb.shape[0] // PATCH * PATCH, rgb.shape[1] // PATCH * PATCH
    return (rgb[:H, :W].transpose(2, 0, 1)[None] / 255.0).astype(np.float32)


class _Images:
    """``CalibrationDataReader`` over the images of a synthetic pairs folder."""

    def __init__(self, folder: Path) -> None:
        self._items = iter([{ONNX_INPUT: _network_input(rgb)}
                            for f in sorted(folder.glob("pair_*.npz"))
                            for rgb in (read_pair(f).rgb0, read_pair(f).rgb1)])

    def get_next(self) -> dict | None:
        return next(self._items, None)


def quantize(fp32: Path, out: Path, calib: Path) -> float:
    """Write the static int8 file; returns the seconds it took (calibration included)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    start = time.perf_counter()
    quantize_static(str(fp32), str(out), _Images(calib), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return time.perf_counter() - start


def main() -> None:
    """Quantise (once), then time and compare the three files; print and write JSON."""
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calib", type=Path, required=True, help="synth pairs folder")
    parser.add_argument("--fp32", type=Path, required=True, help="fp32 file (mickey-ros export)")
    parser.add_argument("--size", default="378x252")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mickey_backends/report_int8.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    static = args.fp32.with_name(args.fp32.stem + "-int8static.onnx")
    report = {"threads": 1, "load_avg_1min": [os.getloadavg()[0]]}
    if not static.is_file():
        report["quantize_s"] = quantize(args.fp32, static, args.calib)
    files = {"fp32": args.fp32, "int8linear (dynamic)":
             args.fp32.with_name(args.fp32.stem + "-int8linear.onnx"), "int8static": static}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for n, p in files.items() if p.is_file()}
    W, H = (int(v) for v in args.size.split("x"))
    image = _network_input(_test_images((W, H))[1])
    ms: dict[str, list[float]] = {n: [] for n in sessions}
    outs = {}
    for i in range(args.iterations + 1):  # first pass: warm-up
        for name, session in sessions.items():
            start = time.perf_counter()
            outs[name] = session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: image})
            if i:
                ms[name].append((time.perf_counter() - start) * 1e3)
    ref = [torch.from_numpy(o) for o in outs["fp32"]]
    report["network_ms"] = {n: statistics.median(v) for n, v in ms.items()}
    report["runs_ms"] = ms
    report["rel_error_vs_fp32"] = {n: relative_errors(ref, [torch.from_numpy(o) for o in v])
                                   for n, v in outs.items() if n != "fp32"}
    report["file_mb"] = {n: p.stat().st_size / 1e6 for n, p in files.items() if p.is_file()}
    report["load_avg_1min"].append(os.getloadavg()[0])
    print(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
