from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.synth.textures import load_texture_bank


class TestLoadTextureBank:
    def test_layers_and_infos(self):
        bank = load_texture_bank()
        L = len(bank.infos)
        assert bank.layers.shape == (L, 512, 512, 3) and bank.layers.dtype == np.uint8
        assert [info.layer for info in bank.infos] == list(range(L))
        assert len({info.name for info in bank.infos}) == L
        for category in (
            "floor",
            "wall",
            "ceiling",
            "ground",
            "facade",
            "object",
            "poster",
            "foliage",
        ):
            assert bank.by_category(category)
        # every layer has texture (no blank uploads)
        assert np.all(bank.layers.reshape(L, -1).std(axis=1) > 5)

    def test_licences_are_cc0_public_domain_or_procedural(self):
        for info in load_texture_bank().infos:
            assert any(word in info.licence for word in ("CC0", "public domain", "procedural"))
        names = {info.name for info in load_texture_bank().infos}
        assert {"brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "rocket"} <= names

    def test_deterministic(self):
        a = load_texture_bank.__wrapped__(64)
        b = load_texture_bank.__wrapped__(64)
        assert a.layers.tobytes() == b.layers.tobytes() and a.layers.shape[1:] == (64, 64, 3)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="power of two"):
            load_texture_bank(100)
        with pytest.raises(KeyError, match="known"):
            load_texture_bank().by_category("sky")
