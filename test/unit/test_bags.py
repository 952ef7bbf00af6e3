"""Tests of mickey_ros/bags/writer.py (kept beside the synth tests, its main user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosHistory, QosReliability
from rosbags.rosbag2 import Reader

from mickey_ros.bags.writer import (
    DEFAULT_QOS,
    LATCHED_QOS,
    RELATIVE_POSE_TYPE,
    SENSOR_QOS,
    add_connection,
    make_typestore,
    open_writer,
    write_message,
)


class TestQosProfiles:
    @pytest.mark.parametrize(
        "qos, reliability, durability, depth",
        [
            (LATCHED_QOS, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, 1),
            (SENSOR_QOS, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 5),
            (DEFAULT_QOS, QosReliability.RELIABLE, QosDurability.VOLATILE, 10),
        ],
    )
    def test_values(self, qos, reliability, durability, depth):
        (profile,) = qos
        assert (profile.reliability, profile.durability, profile.depth) == (
            reliability,
            durability,
            depth,
        )
        assert profile.history == QosHistory.KEEP_LAST


class TestMakeTypestore:
    def test_registers_relative_pose_as_in_the_msg_file(self):
        from rosbags.typesys import get_types_from_msg

        typestore = make_typestore()
        assert "sensor_msgs/msg/CameraInfo" in typestore.types
        msg_file = Path(__file__).resolve().parents[2] / "msg" / "RelativePose.msg"
        expected = get_types_from_msg(msg_file.read_text(), RELATIVE_POSE_TYPE)
        assert typestore.fielddefs[RELATIVE_POSE_TYPE] == expected[RELATIVE_POSE_TYPE]


class TestOpenWriter:
    @pytest.mark.parametrize("storage, suffix", [("sqlite3", ".db3"), ("mcap", ".mcap")])
    def test_round_trip_with_qos_metadata(self, tmp_path, storage, suffix):
        typestore = make_typestore()
        String = typestore.types["std_msgs/msg/String"]
        with open_writer(tmp_path / "bag", storage) as writer:
            latched = add_connection(
                writer, "/latched", "std_msgs/msg/String", typestore, LATCHED_QOS
            )
            plain = add_connection(writer, "/plain", "std_msgs/msg/String", typestore)
            write_message(writer, latched, 5, String(data="once"), typestore)
            for t in (10, 20):
                write_message(writer, plain, t, String(data=f"t{t}"), typestore)
        assert any(p.suffix == suffix for p in (tmp_path / "bag").iterdir())
        with Reader(tmp_path / "bag") as reader:
            qos = {c.topic: c.ext.offered_qos_profiles[0].durability for c in reader.connections}
            got = [
                (c.topic, t, typestore.deserialize_cdr(raw, c.msgtype).data)
                for c, t, raw in reader.messages()
            ]
        assert qos == {"/latched": QosDurability.TRANSIENT_LOCAL, "/plain": QosDurability.VOLATILE}
        assert got == [("/latched", 5, "once"), ("/plain", 10, "t10"), ("/plain", 20, "t20")]

    def test_relative_pose_cdr_round_trip(self, tmp_path):
        typestore = make_typestore()
        from mickey_ros.relocalization.messages import MessageTypes

        types = MessageTypes.from_typestore(typestore)
        msg = types.RelativePose(
            header=types.Header(stamp=types.Time(sec=1, nanosec=2), frame_id="ref"),
            child_frame_id="query",
            transform=types.Transform(
                translation=types.Vector3(x=1.0, y=2.0, z=3.0),
                rotation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.eye(6).ravel(),
            confidence=5.0,
            inlier_ratio=0.5,
            num_inliers=5,
            num_samples=10,
            valid=True,
            accepted=True,
            status="ok",
            inference_ms=1.0,
            e2e_ms=2.0,
            reference_stamp=types.Time(sec=0, nanosec=0),
            keyframe_id="",
            runner_up_confidence=0.0,
        )
        with open_writer(tmp_path / "bag") as writer:
            conn = add_connection(writer, "/estimate", RELATIVE_POSE_TYPE, typestore)
            write_message(writer, conn, 7, msg, typestore)
        with Reader(tmp_path / "bag") as reader:
            ((_, t, raw),) = list(reader.messages())
        back = typestore.deserialize_cdr(raw, RELATIVE_POSE_TYPE)
        assert t == 7 and back.child_frame_id == "query" and back.transform.translation.z == 3.0

    def test_exceptions(self, tmp_path):
        with pytest.raises(ValueError, match="storage"):
            with open_writer(tmp_path / "a", "rosbag1"):
                pass
        (tmp_path / "exists").mkdir()
        with pytest.raises(FileExistsError, match="already exists"):
            with open_writer(tmp_path / "exists"):
                pass
