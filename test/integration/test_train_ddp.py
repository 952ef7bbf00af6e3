"""A real two-process DDP training on CPU (gloo over loopback) and its resume (issue 18).

Both ranks are started here as separate processes, the way ``torchrun`` or a cluster starts them
(``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1``); each runs ``_ddp_worker.py``, which trains the
tiny model with ``main(..., accelerator="cpu", devices=2)`` through a supervised warm-up (steps
0-1: the keypoint heads get no gradient) into the paper's objective, with a trainable backbone.
No rendering: the pairs are a random texture on a plane, written as pair files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mickey_ros.synth.pairs import SyntheticPair, save_pair

WORKER = Path(__file__).with_name("_ddp_worker.py")
SIZE = 168  # 12 x 12 cells of 14 px
TIMEOUT_S = 240


def _write_plane_pairs(folder: Path, count: int, seed: int) -> Path:
    """``count`` distinct pairs of a textured plane 2 m away, seen with a sideways motion."""
    folder.mkdir(parents=True)
    K = np.array([[150.0, 0.0, SIZE / 2], [0.0, 150.0, SIZE / 2], [0.0, 0.0, 1.0]])
    depth = np.full((SIZE, SIZE), 2.0, dtype=np.float32)
    for i in range(count):
        texture = np.random.default_rng(seed + i).integers(0, 256, (SIZE, SIZE + 40, 3), np.uint8)
        shift = 8 + i % 8  # pixels: u1 = u0 + shift, so t_x = 2 m * shift / f
        T_1_0 = np.eye(4)
        T_1_0[0, 3] = 2.0 * shift / 150.0
        rgb0 = np.ascontiguousarray(texture[:, 20 : 20 + SIZE])
        rgb1 = np.ascontiguousarray(texture[:, 20 - shift : 20 - shift + SIZE])
        save_pair(folder / f"pair_{i:05d}.npz",
                  SyntheticPair(rgb0, rgb1, K, K, T_1_0, depth, depth, 1.0, {"index": i}))
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(data: Path, out: Path, tag: str, max_steps: int, resume: Path | None = None) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "GLOO_SOCKET_IFNAME": "lo", "NODE_RANK": "0", "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(WORKER), "--data", str(data), "--out", str(out), "--tag", tag,
               "--max-steps", str(max_steps)] + (["--resume", str(resume)] if resume else [])
    ranks = [subprocess.Popen(command, env={**env, "LOCAL_RANK": str(r), "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (0, 1)]
    try:
        logs = [rank.communicate(timeout=TIMEOUT_S)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    for r, (rank, log) in enumerate(zip(ranks, logs)):
        assert rank.returncode == 0, f"rank {r} exited {rank.returncode}:\n{log[-3000:]}"


def _steps(out: Path, tag: str, rank: int) -> list[dict]:
    lines = (out / f"{tag}-steps-rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _writes(out: Path, tag: str, rank: int) -> list[str]:
    path = out / f"{tag}-writes-rank{rank}.txt"
    return path.read_text().split() if path.exists() else []


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Train to step 3, then resume from ``last.ckpt`` to step 5, in one run folder."""
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    _write_plane_pairs(data / "train", 8, seed=0)  # 4 per rank: 2 steps per epoch
    _write_plane_pairs(data / "val", 2, seed=100)
    out = root / "run"
    _train(data, out, "first", max_steps=3)
    _train(data, out, "resumed", max_steps=5, resume=out / "checkpoints" / "last.ckpt")
    return out


class TestTwoProcessDdp:
    @pytest.mark.parametrize("tag, steps", [("first", [1, 2, 3]), ("resumed", [4, 5])])
    def test_ranks_see_different_batches_and_keep_identical_weights(self, run, tag, steps):
        rank0, rank1 = _steps(run, tag, 0), _steps(run, tag, 1)
        assert [s["step"] for s in rank0] == [s["step"] for s in rank1] == steps
        for a, b in zip(rank0, rank1):
            assert a["batch"] != b["batch"], a["step"]
            assert a["weights"] == b["weights"], a["step"]
        assert len({s["weights"] for s in rank0}) == len(steps)  # every step changed them

    @pytest.mark.parametrize("tag, steps", [("first", [2, 3]), ("resumed", [4, 5])])
    def test_each_checkpoint_is_written_once_by_rank_zero(self, run, tag, steps):
        written = _writes(run, tag, 0)
        assert _writes(run, tag, 1) == []
        assert sorted(n for n in written if n.startswith("step-")) == [
            f"step-{s:07d}.ckpt" for s in steps]
        named = [n for n in written if n != "last.ckpt"]  # last.ckpt follows every save
        assert len(named) == len(set(named)), written

    def test_resume_continued_the_run(self, run):
        ckpts = run / "checkpoints"
        assert sorted(p.name for p in ckpts.glob("step-*")) == [
            f"step-{s:07d}.ckpt" for s in (2, 3, 4, 5)]
        first, resumed = _steps(run, "first", 0), _steps(run, "resumed", 0)
        assert resumed[0]["weights"] not in {s["weights"] for s in first}
