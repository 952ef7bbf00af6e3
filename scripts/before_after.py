#!/usr/bin/env python3
"""Before and after a fine-tune: two checkpoints on the held-out split, one solver seed.

Writes ``compare.md`` (the table), ``compare.json`` and ``compare_cdf.png`` (translation and
rotation error CDFs of both models and the no-motion guess) to ``--out``; see
``mickey_ros.eval.compare`` and docs/datasets.md. ``demo`` names the bundled model.

Example::

    python scripts/before_after.py --data my_dataset --before demo \
        --after runs/own/last.ckpt --out runs/own/before_after
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mickey_ros.cli.main import parse_size
from mickey_ros.eval import compare
from mickey_ros.eval.common import ModelSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="converted dataset root")
    parser.add_argument("--split", default="val", help="held-out split (val or test)")
    parser.add_argument("--before", default="demo", help="checkpoint before (demo: bundled)")
    parser.add_argument("--after", required=True, help="fine-tuned checkpoint")
    parser.add_argument("--dinov2-weights", help="DINOv2 weights for official ViT checkpoints")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="solver seed of both models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=parse_size, help="network input WxH (default: native)")
    parser.add_argument("--sample-step", type=int, default=1, help="every k-th query frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    models = {
        name: ModelSettings(checkpoint=path, dinov2_weights=args.dinov2_weights,
                            device=args.device, resize=args.size, seed=args.seed)
        for name, path in (("before", args.before), ("after", args.after))
    }
    for name, settings in models.items():
        if settings.checkpoint != "demo" and not Path(settings.checkpoint).is_file():
            print(f"before_after: error: --{name} {settings.checkpoint} does not exist",
                  file=sys.stderr)
            return 2
    rows = compare.main(models, args.data, args.out, args.split, args.sample_step)
    print((args.out / "compare.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {args.out / 'compare_cdf.png'}; no-motion median "
          f"{rows[compare.NO_MOTION]['median_t_m']:.3f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
