#!/usr/bin/env python3
"""Benchmark (not a test): does a finer encoder or dense depth supervision learn depth faster?

Trains ``mickey_demo_cnn`` from scratch for ``--steps`` steps of the supervised warm-up (depth +
correspondence terms of config/train/demo_cnn.yaml, no pose objective) on pre-rendered pairs of
the demo rig, with one of these changes, then measures the held-out depth and pose
(docs/training.md, "What mattered"):

    --encoder patchify   the shipped ConvEncoder (7 x 7 stride-7 stem, blocks at 1/7 and 1/14)
    --encoder pyramid    resize 14 px cells to 16 px, then a stride-2 pyramid (1/2 .. 1/16) with
                         a space-to-depth skip from 1/8: finer features for far walls
    --dense-depth W      + W x a per-pixel log-depth loss from a 1 x 1 conv of the encoder's
                         cells to 14 x 14 sub-pixels (``supervision.dense_depth_weight``,
                         train/dense_depth.py; the head starts at zero)

Example::

    python scripts/encoder_ablation.py render --pairs /work/ablation_pairs --count 6000
    python scripts/encoder_ablation.py train --pairs /work/ablation_pairs --encoder pyramid \\
        --heldout runs/demo_cnn/heldout_pairs --out /work/ablation/pyramid
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_demo import (  # noqa: E402
    CONFIG,
    depth_by_range,
    heldout_batches,
    log_depth_ratio,
    log_depth_slope,
)

from mickey_ros.model.config import get_model_config  # noqa: E402
from mickey_ros.model.conv_encoder import RGB_MEAN, RGB_STD, pixel_coordinates  # noqa: E402
from mickey_ros.model.heads import ResBlock  # noqa: E402
from mickey_ros.model.mickey import MicKey  # noqa: E402
from mickey_ros.synth.pairs import write_pairs  # noqa: E402
from mickey_ros.train.config import load_train_config  # noqa: E402
from mickey_ros.train.data import SyntheticPairs  # noqa: E402
from mickey_ros.train.loss import sample_depth_at  # noqa: E402
from mickey_ros.train.module import MicKeyTrainingModule  # noqa: E402

PATCH = 14


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class PyramidEncoder(nn.Module):
    """(B, 3, 14h, 14w) -> (B, 128, h, w) through a 16 px-cell stride-2 pyramid (1.49 M params).

    Widths 24, 48, 96, 128 at 1/2, 1/4, 1/8, 1/16 of the resized input; 1, 2 and 3 residual
    blocks at 1/4, 1/8 and 1/16 (dilations 1, 2, 4 there); a 1 x 1 conv of the 1/8 map's 2 x 2
    space-to-depth added at 1/16; the image-wide mean added as the shipped encoder does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(5, 24)
        self.s4 = nn.Sequential(_conv_bn_relu(24, 48), ResBlock(48, 48))
        self.s8 = nn.Sequential(_conv_bn_relu(48, 96), ResBlock(96, 96), ResBlock(96, 96))
        self.s16 = nn.Sequential(_conv_bn_relu(96, 128),
                                 *(ResBlock(128, 128, dilation=d) for d in (1, 2, 4)))
        self.skip = nn.Conv2d(4 * 96, 128, 1)
        self.context = nn.Conv2d(128, 128, 1)

    def forward(self, image: Tensor) -> Tensor:
        B, _, H, W = image.shape
        x = torch.cat([(image - RGB_MEAN) / RGB_STD, pixel_coordinates(B, H, W, image)], 1)
        x = F.interpolate(x, size=(16 * (H // PATCH), 16 * (W // PATCH)), mode="bilinear",
                          align_corners=False)
        x8 = self.s8(self.s4(self.stem(x)))
        x = self.s16(x8) + self.skip(F.pixel_unshuffle(x8, 2))
        return x + self.context(x.mean(dim=(2, 3), keepdim=True))


@torch.no_grad()
def measure(module: MicKeyTrainingModule, heldout: Path, size_wh: tuple[int, int]) -> dict:
    """Held-out depth (pooled, per image, slope, per range) and pose with the inference solver."""
    module.eval()
    rows, z_pred, z_gt, per_image, slopes = [], [], [], [], []
    for i, batch in enumerate(heldout_batches(heldout, size_wh, with_depth=True)):
        out = module.forward_pair(batch)
        for f, key in ((out["f0"], "depth0"), (out["f1"], "depth1")):
            z = sample_depth_at(batch[key], f.kpts)
            z_pred.append(f.depth.flatten())
            z_gt.append(z.flatten())
            slopes += log_depth_slope(f.depth, z).tolist()
            per_image += [float(log_depth_ratio(p[g > 0], g[g > 0]).abs().mean())
                          for p, g in zip(f.depth, z)]
        rows.append(module.evaluate_batch(batch, torch.Generator().manual_seed(i), out))
    err = torch.cat(rows).numpy()
    return {"median_t_m": float(np.median(err[:, 0])), "median_R_deg": float(np.median(err[:, 1])),
            "depth_per_image_mean": float(np.median(per_image)),
            "depth_slope": float(np.median(slopes)),
            **depth_by_range(torch.cat(z_pred), torch.cat(z_gt))}


def train(args: argparse.Namespace) -> dict:
    """``args.steps`` supervised steps from scratch, then ``measure``; writes result.json."""
    torch.manual_seed(0)
    cfg = load_train_config(CONFIG)
    cfg = replace(cfg, max_steps=args.steps,
                  supervision=replace(cfg.supervision, pose_from_step=10**9,
                                      dense_depth_weight=args.dense_depth))
    model_cfg = get_model_config("mickey_demo_cnn")
    model = MicKey(replace(model_cfg, backbone=replace(model_cfg.backbone, trainable=True)))
    if args.encoder == "pyramid":
        model.extractor.conv_encoder = PyramidEncoder()
    module = MicKeyTrainingModule(cfg, model).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr, eps=cfg.optim.adam_eps)
    data = SyntheticPairs(cfg.data, 0, 0, args.pairs)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True,
                                         num_workers=1, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    step, seconds, start = 0, [], time.time()
    while step < args.steps:
        for batch in loader:
            if step == args.steps:
                break
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate(step)
            t0 = time.perf_counter()
            total, _ = module.compute_losses(batch, step)
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip_norm)
            opt.step()
            seconds.append(time.perf_counter() - t0)
            step += 1
    result = {"encoder": args.encoder, "dense_depth": args.dense_depth, "steps": args.steps,
              "encoder_params_M": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
              "s_per_step": float(np.median(seconds)), "train_s": time.time() - start,
              **measure(module, args.heldout, (cfg.data.width, cfg.data.height))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("render", "train"))
    parser.add_argument("--pairs", type=Path, required=True, help="pre-rendered training pairs")
    parser.add_argument("--count", type=int, default=6000, help="render: pairs (seed 0)")
    parser.add_argument("--encoder", choices=("patchify", "pyramid"), default="patchify")
    parser.add_argument("--dense-depth", type=float, default=0.0, help="weight, 0 = off")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--heldout", type=Path,
                        help="held-out pairs (scripts/train_demo.py render)")
    parser.add_argument("--out", type=Path, help="train: folder for result.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.stage == "render":
        cfg = load_train_config(CONFIG)
        write_pairs(args.pairs, args.count, (cfg.data.width, cfg.data.height), 0,
                    cfg.data.synthetic_pairs, previews=False)
    else:
        if args.heldout is None or args.out is None:
            parser.error("train needs --heldout and --out")
        print(json.dumps(train(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
