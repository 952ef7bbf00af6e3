"""The node's start-up log names the model (issue 15), with the demo model's not-for-use note."""

from __future__ import annotations

import fake_ros
import pytest

from mickey_ros.estimator.relative_pose import model_label


@pytest.fixture
def node_module(monkeypatch):
    fake_ros.install(monkeypatch)
    from mickey_ros.ros import node

    yield node
    fake_ros.forget_node_modules()


class Named:
    """Estimator double carrying the name the real estimator's constructors give it."""

    model_name = model_label("demo")
    has_reference = False


def test_configured_line_names_the_demo_model(node_module, monkeypatch):
    monkeypatch.setattr(node_module, "load_estimator", lambda params, logger: Named())
    node = node_module.RelocalizeNode(parameter_overrides={"model.checkpoint": "demo"})
    try:
        assert node.start()
        configured = [m for level, m in node.logger.records if m.startswith("configured:")]
        assert configured == [
            "configured: model demo_model.ckpt (demo model: for trying the tool, not for real "
            "use) on cuda, tf_mode relative, min_confidence 0.05"]
    finally:
        node.release()


def test_configured_line_says_the_threads_and_precision_chosen(node_module, monkeypatch):
    from mickey_ros.estimator.runtime import RunSettings

    class Tuned(Named):
        run_settings = RunSettings(1, "bf16", "bf16", "precision auto -> bf16; threads 1 (auto)")

    monkeypatch.setattr(node_module, "load_estimator", lambda params, logger: Tuned())
    node = node_module.RelocalizeNode(parameter_overrides={"model.checkpoint": "demo"})
    try:
        assert node.start()
        configured = [m for level, m in node.logger.records if m.startswith("configured:")]
        assert len(configured) == 1 and configured[0].endswith(
            "min_confidence 0.05; runs with precision auto -> bf16; threads 1 (auto)")
    finally:
        node.release()
