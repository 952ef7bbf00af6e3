"""Before and after a fine-tune: checkpoints on one held-out split, same solver seed, one table.

Each model runs through ``eval.mapfree.main`` (the submission of ``mickey-ros eval mapfree``) and
is scored per frame by ``eval.score.score_scene``, with every query frame evaluated
(``sample_step`` 1 by default: converted held-out scenes are small). The no-motion guess (the
identity pose for every query) is scored beside them. Outputs: ``compare.json``, ``compare.md``
(the table) and ``compare_cdf.png`` (translation and rotation error CDFs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mickey_ros.eval import mapfree, score
from mickey_ros.eval.common import LOG, ModelSettings, atomic_write_text, write_json
from mickey_ros.eval.scene_score import KEY_POSE_AUC, KEY_POSE_PREC
from mickey_ros.mapfree.dataset import list_scenes
from mickey_ros.mapfree.files import ParseReport, PoseEntry

NO_MOTION = "no motion"


def _no_motion(scene, sample_step: int) -> list[PoseEntry]:
    return [PoseEntry(f, np.array([1.0, 0, 0, 0]), np.zeros(3), 0.0)
            for f in scene.query_frames(sample_step)]


def _errors(scenes, submitted: dict[str, list[PoseEntry]], sample_step: int) -> dict:
    scores = [score.score_scene(s, submitted.get(s.name), sample_step) for s in scenes]
    t_err = np.concatenate([s.t_err_m for s in scores]) if scores else np.zeros(0)
    r_err = np.concatenate([s.r_err_deg for s in scores]) if scores else np.zeros(0)
    official = score.aggregate(scores)
    return {
        "frames": int(len(t_err)), "failures": sum(len(s.failures) for s in scores),
        "median_t_m": float(np.median(t_err)) if len(t_err) else float("nan"),
        "median_r_deg": float(np.median(r_err)) if len(r_err) else float("nan"),
        "precision_25cm_5deg": official[KEY_POSE_PREC],
        "auc_25cm_5deg": official[KEY_POSE_AUC],
        "t_err_m": t_err.tolist(), "r_err_deg": r_err.tolist(),
    }


def _table(rows: dict[str, dict]) -> str:
    lines = ["| model | frames | median translation (m) | median rotation (deg) | "
             "precision 25 cm, 5 deg | AUC 25 cm, 5 deg |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['frames']} | {r['median_t_m']:.3f} | "
                     f"{r['median_r_deg']:.2f} | {r['precision_25cm_5deg']:.3f} | "
                     f"{r['auc_25cm_5deg']:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: dict[str, dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in rows.items():
        for ax, key in zip(axes, ("t_err_m", "r_err_deg")):
            values = np.sort(np.asarray(r[key]))
            if len(values):
                ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                        label=name, linestyle="--" if name == NO_MOTION else "-")
    axes[0].set_xlabel("translation error (m)")
    axes[1].set_xlabel("rotation error (deg)")
    axes[0].set_ylabel("fraction of held-out frames")
    for ax in axes:
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(
    models: dict[str, ModelSettings],
    data_root: str | Path,
    out_dir: str | Path,
    split: str = "val",
    sample_step: int = 1,
) -> dict:
    """Score every model of ``models`` (name -> settings) and the no-motion guess on ``split``.

    The settings should share the solver seed (the CLI gives them one ``--seed``). Submissions
    land in ``out_dir/mapfree-<split>-<name>-...`` and are reused on a rerun.

    Returns:
        ``{name: {frames, failures, median_t_m, median_r_deg, precision/auc, errors}}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = [s for s in list_scenes(data_root, split) if s.has_ground_truth]
    if not scenes:
        raise FileNotFoundError(f"no scenes with ground truth in {Path(data_root) / split}")
    rows: dict[str, dict] = {}
    for name, settings in models.items():
        cfg = mapfree.MapfreeEvalConfig(model=replace(settings, name=name), split=split,
                                        sample_step=sample_step)
        submission = mapfree.main(cfg, data_root, out_dir)
        submitted = score.read_submission(submission, ParseReport())
        rows[name] = _errors(scenes, submitted, sample_step)
        LOG.info("%s: median %.3f m, %.2f deg", name, rows[name]["median_t_m"],
                 rows[name]["median_r_deg"])
    guess = {s.name: _no_motion(s, sample_step) for s in scenes}
    rows[NO_MOTION] = _errors(scenes, guess, sample_step)
    write_json(out_dir / "compare.json", rows)
    atomic_write_text(out_dir / "compare.md", _table(rows))
    seeds = sorted({m.seed for m in models.values()})
    _plot(out_dir / "compare_cdf.png", rows,
          f"{Path(data_root).name}/{split}: {rows[NO_MOTION]['frames']} held-out frames, "
          f"solver seed {', '.join(map(str, seeds))}")
    return rows
