r"""Where an exported file's CPU time goes: ONNX Runtime's per-operator profile, files interleaved.

Runs each ``.onnx`` file (``mickey-ros export``, ``export_int8``) on the same random image, one
thread, the files one after another inside every iteration (so machine load hits all alike), and
prints per file the median network time and the time per operator type per run (ONNX Runtime's
profiler after graph optimisation, so what actually ran; averaged over all runs, the warm-up
included). This is how the int8 file's slow
quantised convolutions (ConvInteger) and the five-op GELU were found (docs/performance.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/onnx_ops_cpu.py --size 378x252 --iterations 4 \
        /tmp/mickey_backends/mickey_vitl14-int8linear.onnx /tmp/mickey_backends/mickey_vitl14.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np


def _session(path: Path, profile_dir: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(profile_dir) / path.stem)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _op_times_ms(profile: str, runs: int) -> Counter:
    """Milliseconds per run of each operator type in an ONNX Runtime profile."""
    per_op: Counter = Counter()
    for event in json.loads(Path(profile).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / runs
    return per_op


def main() -> None:
    """Parse arguments, run the files interleaved, print the table per file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="exported .onnx files")
    parser.add_argument("--size", default="378x252", help="input WxH, multiples of 14")
    parser.add_argument("--iterations", type=int, default=4, help="timed runs after a warm-up")
    parser.add_argument("--top", type=int, default=12, help="operator types listed per file")
    args = parser.parse_args()
    W, H = (int(v) for v in args.size.split("x"))
    image = np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)
    with tempfile.TemporaryDirectory() as profile_dir:
        sessions = {path: _session(path, profile_dir) for path in args.files}
        seconds: dict[Path, list[float]] = {path: [] for path in args.files}
        load = []
        for iteration in range(args.iterations + 1):
            load.append(os.getloadavg()[0])
            for path, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {session.get_inputs()[0].name: image})
                if iteration:  # the first run plans the shapes: a warm-up
                    seconds[path].append(time.perf_counter() - start)
        profiles = {path: session.end_profiling() for path, session in sessions.items()}
        print(f"{args.size}, one thread, {args.iterations} runs after a warm-up, load average "
              f"{min(load):.1f}-{max(load):.1f}")
        for path in args.files:
            ops = _op_times_ms(profiles[path], args.iterations + 1)
            total = sum(ops.values())
            runs = ", ".join(f"{s:.2f}" for s in seconds[path])
            print(f"\n{path.name}: median {np.median(seconds[path]):.3f} s ({runs})")
            for op, ms in ops.most_common(args.top):
                print(f"  {op:28s} {ms:8.1f} ms {100 * ms / total:5.1f} %")


if __name__ == "__main__":
    main()
