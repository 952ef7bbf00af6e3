"""msg/RelativePose.msg parsed by rosbags and by the official rosidl parser (Debian), if present."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from mickey_ros.relocalization import messages

ROOT = Path(__file__).resolve().parents[2]
MSG = ROOT / "msg" / "RelativePose.msg"
FIELDS = [
    ("header", "std_msgs/msg/Header"), ("child_frame_id", "string"),
    ("transform", "geometry_msgs/msg/Transform"), ("covariance", "float64[36]"),
    ("confidence", "float32"), ("inlier_ratio", "float32"), ("num_inliers", "uint32"),
    ("num_samples", "uint32"), ("valid", "bool"), ("accepted", "bool"), ("status", "string"),
    ("inference_ms", "float32"), ("e2e_ms", "float32"),
    ("reference_stamp", "builtin_interfaces/msg/Time"), ("keyframe_id", "string"),
    ("runner_up_confidence", "float32"),
]


def _rosbags_type(field) -> str:
    kind, spec = field
    if kind.name == "BASE":
        return "string" if spec[0] == "string" else spec[0]
    if kind.name == "NAME":
        return spec
    if kind.name == "ARRAY":
        return f"{spec[0][1][0]}[{spec[1]}]"
    raise AssertionError(kind)


class TestRelativePoseMsg:
    def test_embedded_copy_is_identical(self):
        assert MSG.read_text() == messages.RELATIVE_POSE_MSG

    def test_rosbags_parses_fields(self):
        types = get_types_from_msg(MSG.read_text(), messages.RELATIVE_POSE_TYPE)
        _, fields = types[messages.RELATIVE_POSE_TYPE]
        assert [(name, _rosbags_type(f)) for name, f in fields] == FIELDS

    @pytest.mark.parametrize("store", [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY])
    def test_cdr_round_trip_byte_exact(self, store):
        ts = get_typestore(store)
        types = messages.MessageTypes.from_typestore(ts)
        msg = types.RelativePose(
            header=messages.header_msg(types, 1_700_000_000_000_000_001, "mickey_reference"),
            child_frame_id="mickey_query_optical",
            transform=messages.transform_msg(types, np.eye(4)),
            covariance=np.arange(36, dtype=np.float64), confidence=812.5, inlier_ratio=0.25,
            num_inliers=700, num_samples=2048, valid=True, accepted=False,
            status="low confidence", inference_ms=41.5, e2e_ms=55.25,
            reference_stamp=messages.ns_to_stamp(types, 5), keyframe_id="kf00003",
            runner_up_confidence=120.5,
        )
        raw = ts.serialize_cdr(msg, messages.RELATIVE_POSE_TYPE)
        assert bytes(raw[:4]) == b"\x00\x01\x00\x00"  # CDR little endian
        back = ts.deserialize_cdr(raw, messages.RELATIVE_POSE_TYPE)
        assert bytes(ts.serialize_cdr(back, messages.RELATIVE_POSE_TYPE)) == bytes(raw)
        assert (back.status, back.num_samples, back.accepted) == ("low confidence", 2048, False)
        assert (back.keyframe_id, back.runner_up_confidence) == ("kf00003", 120.5)
        np.testing.assert_array_equal(back.covariance, np.arange(36))

    def test_type_hash_is_stable_across_stores(self):
        hashes = set()
        for store in (Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY):
            ts = get_typestore(store)
            messages.register_relative_pose(ts)
            hashes.add(ts.hash_rihs01(messages.RELATIVE_POSE_TYPE))
        assert len(hashes) == 1 and hashes.pop().startswith("RIHS01_")


def _debian_rosidl() -> bool:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return False
    probe = subprocess.run([python, "-c", "import rosidl_adapter.parser, rosidl_parser.parser"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _debian_rosidl(),
                    reason="Debian's rosidl parser is not installed for /usr/bin/python3 "
                           "(apt-get install python3-rosidl python3-empy)")
class TestOfficialRosidlParser:
    def test_parse_and_convert_to_idl(self, tmp_path):
        script = textwrap.dedent(f"""
            import pathlib
            from rosidl_adapter.parser import parse_message_string
            from rosidl_adapter.msg import convert_msg_to_idl
            from rosidl_parser.parser import parse_idl_file
            from rosidl_parser.definition import IdlLocator
            text = pathlib.Path({str(MSG)!r}).read_text()
            spec = parse_message_string('mickey_ros', 'RelativePose', text)
            print(','.join(f.name for f in spec.fields))
            out = pathlib.Path({str(tmp_path)!r})
            idl = convert_msg_to_idl(pathlib.Path({str(ROOT)!r}), 'mickey_ros',
                                     pathlib.Path('msg/RelativePose.msg'), out)
            parse_idl_file(IdlLocator(out, idl.relative_to(out)))
            print(idl.name)
        """)
        done = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        names, idl = done.stdout.split()[0], done.stdout.split()[-1]  # converter prints too
        assert names.split(",") == [name for name, _ in FIELDS]
        assert idl == "RelativePose.idl"

    def test_rejects_a_bad_field_name(self):
        script = ("from rosidl_adapter.parser import parse_message_string;"
                  "parse_message_string('mickey_ros', 'RelativePose', 'float32 Confidence')")
        done = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True)
        assert done.returncode != 0 and "Confidence" in done.stderr
