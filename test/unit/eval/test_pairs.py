import hashlib
import json

import cv2
import numpy as np
import pytest

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.eval import pairs
from mickey_ros.eval.common import ModelSettings
from mickey_ros.utils.images import load_rgb

K = np.array([[50.0, 0, 16], [0, 50, 12], [0, 0, 1]])
CFG = pairs.PairsEvalConfig(model=ModelSettings(name="double"))


def key(image):
    return hashlib.sha1(image.tobytes()).hexdigest()


def pair_line(name0, name1, T, rot=True, full_k=True):
    k = list(K.ravel()) * 2 if full_k else [50, 50, 16, 12] * 2
    fields = [name0, name1] + (["0", "0"] if rot else []) + [f"{v:g}" for v in k]
    return " ".join(fields + [repr(float(v)) for v in T.ravel()])


class PairDouble:
    """Returns T_1 inv(T_0) from the poses the images were written with (scaled by ``scale``)."""

    def __init__(self, poses, scale=1.0, invalid=()):
        self.poses, self.scale, self.invalid = poses, scale, set(invalid)
        self.references, self.queries = 0, 0
        self._T0 = None

    def set_reference(self, image, K):
        self._T0 = self.poses[key(image)]
        self.references += 1

    @property
    def has_reference(self):
        return self._T0 is not None

    def estimate(self, image, K):
        self.queries += 1
        T1 = self.poses[key(image)]
        if key(image) in self.invalid:
            return PoseEstimate.invalid("double")
        T = T1 @ np.linalg.inv(self._T0)
        return PoseEstimate(True, T[:3, :3], T[:3, 3] * self.scale, 10.0)

    def estimate_batch(self, images, Ks):
        return [self.estimate(i, k) for i, k in zip(images, Ks)]


@pytest.fixture
def pair_set(tmp_path, helpers):
    """Four images, pairs (0,1), (0,2), (1,3) and the matching double's pose table."""
    rng = np.random.default_rng(3)
    images, poses = tmp_path / "images", {}
    (images / "scene").mkdir(parents=True)
    T = {}
    for i in range(4):
        name = f"scene/{i}.jpg"
        cv2.imwrite(str(images / name), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
        T[i] = helpers.random_pose(rng)
        poses[key(load_rgb(images / name))] = T[i]
    lines = ["# name0 name1 rot0 rot1 K0 K1 T_0to1", ""]
    lines += [
        pair_line(f"scene/{a}.jpg", f"scene/{b}.jpg", T[b] @ np.linalg.inv(T[a]))
        for a, b in ((0, 1), (0, 2), (1, 3))
    ]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.txt", images, poses


class TestReadPairs:
    @pytest.mark.parametrize(
        "rot, full_k", [(True, True), (False, True), (True, False), (False, False)]
    )
    def test_formats(self, tmp_path, rot, full_k):
        T = np.eye(4)
        T[:3, 3] = [0.1, 0.2, 0.3]
        (tmp_path / "p.txt").write_text(pair_line("a.jpg", "b.jpg", T, rot, full_k) + "\n")
        (pair,) = pairs.read_pairs(tmp_path / "p.txt")
        assert (pair.name0, pair.name1) == ("a.jpg", "b.jpg")
        np.testing.assert_allclose(pair.K0, K)
        np.testing.assert_allclose(pair.K1, K)
        np.testing.assert_allclose(pair.T_1_0, T)

    def test_exceptions(self, tmp_path):
        path = tmp_path / "p.txt"
        path.write_text("a b 1 2 3\n")
        with pytest.raises(ValueError, match=r"p.txt:1: expected 26, 28, 36 or 38 fields"):
            pairs.read_pairs(path)
        path.write_text("\n" + pair_line("a", "b", np.eye(4)).replace(" 0 0 ", " 1 0 ", 1))
        with pytest.raises(ValueError, match=r"p.txt:2: EXIF rotations"):
            pairs.read_pairs(path)
        path.write_text(pair_line("a", "b", 2 * np.eye(4)))
        with pytest.raises(ValueError, match="rigid transform"):
            pairs.read_pairs(path)
        path.write_text("# nothing\n")
        with pytest.raises(ValueError, match="no pairs"):
            pairs.read_pairs(path)


def _gt(n, rng, helpers):
    return [pairs.PairGroundTruth("a", "b", K, K, helpers.random_pose(rng)) for _ in range(n)]


class TestPairErrorsAndSummarise:
    def test_perfect(self, helpers):
        gt = _gt(5, np.random.default_rng(0), helpers)
        est = [PoseEstimate(True, p.T_1_0[:3, :3], p.T_1_0[:3, 3], 1.0) for p in gt]
        m = pairs.summarise(pairs.pair_errors(gt, est))
        for name in (
            "AUC@5deg",
            "AUC@20deg",
            "AUC_t@0.1m",
            "Recall@(0.1m,5deg)",
            "Scale A1 (<1.25^1)",
        ):
            assert m[name] == pytest.approx(1.0, abs=1e-4)
        assert m["Failure rate"] == 0.0 and m["Pairs"] == 5
        assert m["Median translation error (m)"] < 1e-9

    def test_rotation_offset_auc(self, helpers):
        import torch

        from mickey_ros.geometry.pose import axis_angle_to_rotmat

        gt = _gt(4, np.random.default_rng(1), helpers)
        R_off = axis_angle_to_rotmat(
            torch.tensor([0.0, 0.0, np.deg2rad(7.0)], dtype=torch.float64)
        ).numpy()
        # rotate about the query camera: translation direction changes less than 7 deg
        est = [PoseEstimate(True, R_off @ p.T_1_0[:3, :3], R_off @ p.T_1_0[:3, 3], 1.0) for p in gt]
        errors = pairs.pair_errors(gt, est)
        np.testing.assert_allclose(errors["r_err_deg"], 7.0, atol=1e-6)
        np.testing.assert_allclose(errors["pose_err_deg"], 7.0, atol=1e-6)
        m = pairs.summarise(errors)
        assert m["AUC@5deg"] == 0.0
        # N equal errors e: curve (0, 0) -> (e, 1/N), vertical to (e, 1), flat to t
        assert m["AUC@10deg"] == pytest.approx((7 / 8 + 3) / 10)
        assert m["AUC@20deg"] == pytest.approx((7 / 8 + 13) / 20)

    def test_scale_accuracy_and_failures(self, helpers):
        gt = _gt(4, np.random.default_rng(2), helpers)
        est = [PoseEstimate(True, p.T_1_0[:3, :3], 1.5 * p.T_1_0[:3, 3], 1.0) for p in gt[:3]]
        est.append(PoseEstimate.invalid("no matches"))
        errors = pairs.pair_errors(gt, est)
        np.testing.assert_allclose(errors["scale_ratio"][:3], 1.5)
        np.testing.assert_allclose(
            errors["t_err_m"][:3], [0.5 * np.linalg.norm(p.T_1_0[:3, 3]) for p in gt[:3]]
        )
        assert np.isinf(errors["t_err_m"][3])
        m = pairs.summarise(errors)
        assert m["Scale A1 (<1.25^1)"] == 0.0
        assert m["Scale A2 (<1.25^2)"] == pytest.approx(0.75)
        assert m["Failure rate"] == pytest.approx(0.25)
        assert m["AUC@5deg"] == pytest.approx(
            0.75, abs=1e-6
        )  # direction exact: only the failure costs


class TestMain:
    def test_end_to_end_and_resume(self, tmp_path, pair_set):
        pairs_file, images, poses = pair_set
        double = PairDouble(poses)
        metrics = pairs.main(CFG, pairs_file, images, tmp_path / "out", double)
        assert metrics["AUC@5deg"] == pytest.approx(1.0, abs=1e-4) and metrics["Pairs"] == 3
        assert double.references == 2  # pairs 1 and 2 share image 0
        run = tmp_path / "out" / "pairs-pairs-double-rnative-fp32-seed0"
        assert {p.name for p in run.iterdir()} >= {"estimates.jsonl", "metrics.json", "report.md"}
        # interrupted in the middle of writing the last line: only that pair runs again
        lines = (run / "estimates.jsonl").read_text().splitlines()
        (run / "estimates.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
        again = PairDouble(poses)
        assert pairs.main(CFG, pairs_file, images, tmp_path / "out", again) == metrics
        assert again.queries == 1
        rows = [json.loads(line) for line in (run / "estimates.jsonl").read_text().splitlines()]
        assert [r["index"] for r in rows] == [0, 1, 2]

    def test_seeds(self, tmp_path, pair_set):
        pairs_file, images, poses = pair_set
        out = pairs.evaluate(CFG, pairs_file, images, tmp_path, 2, lambda m: PairDouble(poses, 1.1))
        assert out["summary"]["seeds"] == [0, 1]
        assert out["summary"]["metrics"]["Scale A1 (<1.25^1)"]["mean"] == 1.0
        assert (tmp_path / "pairs-pairs-double-rnative-fp32-seeds0-1.json").is_file()

    def test_missing_images_folder(self, tmp_path, pair_set):
        with pytest.raises(FileNotFoundError, match="images folder"):
            pairs.main(CFG, pair_set[0], tmp_path / "nope", tmp_path, PairDouble({}))
