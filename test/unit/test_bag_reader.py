"""Tests for mickey_ros.bags.reader (issue 5): rosbag2 / MCAP reading that survives damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mcap_helpers import plain
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mickey_ros.bags.reader import MAX_EXAMPLES, BagError, BagReader, ReadIssues

TS = get_typestore(Stores.ROS2_JAZZY)
T_ = TS.types
IMAGE = "sensor_msgs/msg/Image"
INFO = "sensor_msgs/msg/CameraInfo"
TF = "tf2_msgs/msg/TFMessage"


def _header(stamp_ns: int, frame_id: str):
    sec, nsec = divmod(stamp_ns, 10**9)
    return T_["std_msgs/msg/Header"](
        stamp=T_["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)


def _image(stamp_ns: int, value: int = 0):
    return T_[IMAGE](header=_header(stamp_ns, "cam"), height=4, width=5, encoding="rgb8",
                     is_bigendian=0, step=15, data=np.full(60, value, np.uint8))


def _info(stamp_ns: int):
    roi = T_["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                 do_rectify=False)
    return T_[INFO](header=_header(stamp_ns, "cam"), height=4, width=5,
                    distortion_model="plumb_bob", d=np.zeros(5),
                    k=np.array([4.0, 0, 2, 0, 4, 2, 0, 0, 1]), r=np.eye(3).ravel(),
                    p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)


def _tf(stamp_ns: int):
    ts = T_["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, "odom"), child_frame_id="base_link",
        transform=T_["geometry_msgs/msg/Transform"](
            translation=T_["geometry_msgs/msg/Vector3"](x=1.0, y=0.0, z=0.0),
            rotation=T_["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    return T_[TF](transforms=[ts])


def _messages(n: int = 6) -> list[tuple[str, str, int, object]]:
    out = [("/cam/camera_info", INFO, 0, _info(0)), ("/tf", TF, 5, _tf(5))]
    out += [("/cam/image_raw", IMAGE, 10 + i, _image(10 + i, i)) for i in range(n)]
    return out


def write_bag(path: Path, storage: str, messages: list, garbage_at: int | None = None) -> Path:
    """rosbags bag; ``garbage_at``: log time of one extra image message with invalid CDR."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for topic, msgtype, log_ns, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], log_ns, TS.serialize_cdr(msg, msgtype))
        if garbage_at is not None:
            writer.write(connections["/cam/image_raw"], garbage_at, b"\x00\x01\x00\x00garbage")
    return path


def write_independent_mcap(path: Path, messages: list, chunk_size: int = 1024 * 1024) -> Path:
    """Bare .mcap written by mcap-ros2-support (not rosbags)."""
    from mcap_ros2.writer import Writer as McapWriter

    with path.open("wb") as f:
        writer = McapWriter(f, chunk_size=chunk_size)
        schemas = {}
        for topic, msgtype, log_ns, msg in messages:
            if msgtype not in schemas:
                text = TS.generate_msgdef(msgtype, ros_version=2)[0]
                schemas[msgtype] = writer.register_msgdef(msgtype, text)
            writer.write_message(topic, schemas[msgtype], plain(msg), log_time=log_ns)
        writer.finish()
    return path


def _read_all(path: Path, topics=("/cam/image_raw",)) -> tuple[list, BagReader]:
    with BagReader(path) as bag:
        msgs = list(bag.messages(list(topics)))
    return msgs, bag


class TestReadIssues:
    def test_add_keeps_first_examples(self):
        issues = ReadIssues()
        for i in range(MAX_EXAMPLES + 3):
            issues.add(f"m{i}", "bad")
        assert issues.count == MAX_EXAMPLES + 3
        assert issues.examples == [f"m{i}: bad" for i in range(MAX_EXAMPLES)]

    def test_summary(self):
        issues = ReadIssues()
        assert issues.summary() == ""
        issues.add("/a @ 1.000 s", "SerdeError: x")
        issues.stopped = "cut"
        assert issues.summary() == (
            "1 message(s) could not be decoded and were skipped, e.g.:\n"
            "  - /a @ 1.000 s: SerdeError: x\nreading stopped early: cut"
        )


class TestBagReaderOpen:
    @pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
    def test_topics(self, tmp_path, storage):
        path = write_bag(tmp_path / "bag", storage, _messages(6))
        with BagReader(path) as bag:
            assert {t.name: (t.msgtype, t.count) for t in bag.topics.values()} == {
                "/cam/camera_info": (INFO, 1), "/tf": (TF, 1), "/cam/image_raw": (IMAGE, 6)}
            assert not bag.recovered

    def test_bare_mcap_file_and_dir_without_metadata(self, tmp_path):
        path = write_bag(tmp_path / "bag", "mcap", _messages(3))
        (path / "metadata.yaml").unlink()  # a directory holding only the .mcap
        for target in (path, path / "bag.mcap"):
            msgs, _ = _read_all(target)
            assert [m.log_time_ns for m in msgs] == [10, 11, 12]

    def test_independent_mcap_writer(self, tmp_path):
        path = write_independent_mcap(tmp_path / "x.mcap", _messages(4))
        msgs, bag = _read_all(path, ["/cam/image_raw", "/tf"])
        assert [m.topic for m in msgs] == ["/tf"] + ["/cam/image_raw"] * 4
        assert msgs[1].msg.data.tolist() == [0] * 60 and msgs[4].msg.data[0] == 3
        assert msgs[0].msg.transforms[0].child_frame_id == "base_link"

    def test_exception_missing_path(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            BagReader(tmp_path / "nope").open()

    def test_exception_sqlite_dir_without_metadata(self, tmp_path):
        path = write_bag(tmp_path / "bag", "sqlite3", _messages(2))
        (path / "metadata.yaml").unlink()
        with pytest.raises(BagError, match="ros2 bag reindex"):
            BagReader(path).open()

    def test_exception_truncated_sqlite(self, tmp_path):
        path = write_bag(tmp_path / "bag", "sqlite3", _messages(200))
        db = path / "bag.db3"
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
        with pytest.raises(BagError, match=r"cannot read bag .*malformed.*\.recover"):
            BagReader(path).open()

    def test_exception_file_that_is_no_recording(self, tmp_path):
        """Issue 28: a text file named .mcap opened as an empty bag ("topic not in the bag")."""
        cases = {"notes.mcap": b"hello world\n", "empty.mcap": b"", "x.bin": b"hello world\n",
                 "fake.db3": b"hello world\n"}
        sqlite = write_bag(tmp_path / "bag", "sqlite3", _messages(2)) / "bag.db3"
        cases["sqlite.mcap"] = sqlite.read_bytes()
        said = {}
        for name, data in cases.items():
            (tmp_path / name).write_bytes(data)
            with pytest.raises(BagError) as err:
                BagReader(tmp_path / name).open()
            said[name] = str(err.value).split(f"{tmp_path / name} is ")[1].split(";")[0]
        assert said == {"notes.mcap": "not an MCAP file (it starts with b'hello wo')",
                        "empty.mcap": "empty, not an MCAP file",
                        "x.bin": "not a rosbag2 recording (it starts with b'hello wo')",
                        "fake.db3": "not a sqlite3 database (it starts with b'hello wo')",
                        "sqlite.mcap": "a sqlite3 database, not an MCAP file"}
        assert str(err.value).endswith("; pass a rosbag2 recording: a bag directory (with "
                                       "metadata.yaml) or the .mcap file `ros2 bag record -s "
                                       "mcap` wrote")

    @pytest.mark.parametrize("text, problem", [
        ("rosbag2_bagfile_information: [\n", "is not valid YAML (expected the node content, but "
                                              "found '<stream end>' at line 2)"),
        ("version: 9\n", "has no rosbag2_bagfile_information section"),
    ])
    def test_exception_broken_metadata_names_it(self, tmp_path, text, problem):
        """Issue 28: a broken metadata.yaml was followed by an unrelated sqlite3 hint."""
        path = write_bag(tmp_path / "bag", "mcap", _messages(2))
        (path / "metadata.yaml").write_text(text)
        with pytest.raises(BagError) as err:
            BagReader(path).open()
        assert str(err.value) == (
            f"{path / 'metadata.yaml'} {problem}; rebuild it from the recorded files with "
            f"`ros2 bag reindex {path}` (add `-s mcap` for MCAP storage), or pass the file "
            f"{path / 'bag.mcap'} itself")

    def test_truncated_mcap_recovers_complete_chunks(self, tmp_path):
        path = write_independent_mcap(tmp_path / "x.mcap", _messages(40), chunk_size=256)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
        msgs, bag = _read_all(path)
        assert bag.recovered
        assert 10 <= len(msgs) < 40
        assert [m.msg.data[0] for m in msgs] == list(range(len(msgs)))  # in order, no gaps
        assert "truncated or corrupt" in bag.issues.stopped
        assert bag.topics["/cam/image_raw"].count == len(msgs)


class TestRequire:
    def test_present(self, tmp_path):
        with BagReader(write_bag(tmp_path / "bag", "sqlite3", _messages(2))) as bag:
            topic = bag.require("/cam/image_raw", (IMAGE, "sensor_msgs/msg/CompressedImage"), "x")
            assert (topic.msgtype, topic.count) == (IMAGE, 2)

    def test_exception_missing_lists_topics(self, tmp_path):
        with BagReader(write_bag(tmp_path / "bag", "sqlite3", _messages(2))) as bag:
            with pytest.raises(BagError) as err:
                bag.require("/camera/image_raw", (IMAGE,), "camera")
        assert str(err.value).splitlines() == [
            "camera topic '/camera/image_raw' is not in the bag; topics of a suitable type: "
            "/cam/image_raw",
            f"bag {tmp_path / 'bag'} has:",
            f"  /cam/camera_info ({INFO}, 1 msgs)",
            f"  /cam/image_raw ({IMAGE}, 2 msgs)",
            f"  /tf ({TF}, 1 msgs)",
        ]

    def test_exception_wrong_type(self, tmp_path):
        with BagReader(write_bag(tmp_path / "bag", "sqlite3", _messages(2))) as bag:
            with pytest.raises(BagError, match=f"'/tf' has type {TF}, expected {IMAGE}"):
                bag.require("/tf", (IMAGE,), "camera")


class TestMessages:
    @pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
    def test_order_and_content(self, tmp_path, storage):
        msgs, bag = _read_all(write_bag(tmp_path / "bag", storage, _messages(3)),
                              ["/cam/image_raw", "/cam/camera_info"])
        assert [(m.topic, m.log_time_ns) for m in msgs] == [
            ("/cam/camera_info", 0), ("/cam/image_raw", 10), ("/cam/image_raw", 11),
            ("/cam/image_raw", 12)]
        assert msgs[2].msg.data[0] == 1 and msgs[2].msgtype == IMAGE
        assert bag.issues.count == 0 and bag.issues.stopped is None

    @pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
    def test_garbage_cdr_counted_and_skipped(self, tmp_path, storage):
        path = write_bag(tmp_path / "bag", storage, _messages(3), garbage_at=11_500_000_000)
        msgs, bag = _read_all(path)
        assert len(msgs) == 3
        assert bag.issues.count == 1
        assert bag.issues.examples[0].startswith("/cam/image_raw @ 11.500 s: ")
        assert "deserialize" in bag.issues.examples[0]

    def test_corrupt_chunk_stops_with_reason(self, tmp_path):
        path = write_bag(tmp_path / "bag", "mcap", _messages(50))
        data = bytearray((path / "bag.mcap").read_bytes())
        data[200:1200] = b"\xab" * 1000  # inside the only chunk: the index survives
        (path / "bag.mcap").write_bytes(bytes(data))
        msgs, bag = _read_all(path)
        assert len(msgs) < 50
        assert bag.issues.stopped.startswith("the bag is truncated or corrupt (")

    def test_unknown_topic_yields_nothing(self, tmp_path):
        msgs, _ = _read_all(write_bag(tmp_path / "bag", "sqlite3", _messages(2)), ["/nope"])
        assert msgs == []

    def test_not_open(self, tmp_path):
        bag = BagReader(write_bag(tmp_path / "bag", "sqlite3", _messages(1)))
        with pytest.raises(RuntimeError, match="not open"):
            list(bag.messages(["/tf"]))

