"""Tiny training fixtures: a fronto-parallel textured plane seen by two cameras, exact GT."""

from __future__ import annotations

import pytest
import torch

from mickey_ros.train.config import HypothesisConfig, TrainConfig, ValidationConfig

SIZE = 168  # 12 x 12 cells, 6 x 6 interior cells with the 3-cell border


def make_pair_dict(seed: int = 0, size: int = SIZE) -> dict[str, torch.Tensor]:
    """One training sample (the dict of mickey_ros.train.data) of a plane at z = 2 m."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[150.0, 0.0, size / 2], [0.0, 150.0, size / 2], [0.0, 0.0, 1.0]])
    T = torch.eye(4)
    T[0, 3] = 0.1 + 0.05 * seed  # sideways motion, metres
    texture = torch.rand(3, size, size + 40, generator=g)
    shift = int(round(150.0 * T[0, 3].item() / 2.0))  # pixels the plane moves at 2 m
    return {
        "image0": texture[:, :, 20 : 20 + size].contiguous(),
        "image1": texture[:, :, 20 - shift : 20 - shift + size].contiguous(),  # u1 = u0 + shift
        "K0": K, "K1": K, "K0_orig": K, "K1_orig": K,
        "T_1_0": T,
        "image_size": torch.tensor([float(size), float(size)]),
        "depth0": torch.full((size, size), 2.0),
        "depth1": torch.full((size, size), 2.0),
    }


def make_batch(B: int = 2) -> dict[str, torch.Tensor]:
    pairs = [make_pair_dict(seed) for seed in range(B)]
    return {k: torch.stack([p[k] for p in pairs]) for k in pairs[0]}


def tiny_config(**overrides) -> TrainConfig:
    base = TrainConfig(
        model="mickey_tiny",
        batch_size=2,
        num_workers=0,
        seed=0,
        hypotheses=HypothesisConfig(num_draws=3, num_samples=32, num_hypotheses=4),
        validation=ValidationConfig(num_draws=2, num_samples=64, num_hypotheses=10, max_batches=1),
    )
    return TrainConfig(**{**base.__dict__, **overrides})


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch(2)


@pytest.fixture(name="make_batch")
def make_batch_fixture():
    return make_batch


@pytest.fixture(name="make_pair_dict")
def make_pair_dict_fixture():
    return make_pair_dict


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config
