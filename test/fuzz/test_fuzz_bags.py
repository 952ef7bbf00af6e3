"""Fuzzing of rosbag2 reading: damaged MCAP and sqlite3 recordings (issue 9).

Property of ``BagReader``: opening and iterating a recording with bytes cut off or overwritten
either yields messages (skipped ones counted in ``issues``) or raises ``BagError`` with a message;
never another exception, never a hang; a file cut short never loses messages silently. (A flipped
byte inside a message header can drop that one message unnoticed: rosbags does not check the
chunk CRCs.) The recordings are written once per module.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

bag_reader = pytest.importorskip("mickey_ros.bags.reader")

TS = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
TOPICS = ["/cam/image_raw"]
SLOW = max(8, settings.default.max_examples // 4)
_SCRATCH = tempfile.TemporaryDirectory(prefix="mickey_fuzz_bag_")  # removed at exit


def _image(stamp_ns: int, value: int):
    T = TS.types
    sec, nanosec = divmod(stamp_ns, 10**9)
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec,
                                                                           nanosec=nanosec),
                                      frame_id="cam")
    return T[IMAGE](header=header, height=4, width=5, encoding="rgb8", is_bigendian=0, step=15,
                    data=np.full(60, value, np.uint8))


def _write(storage: str) -> Path:
    path = Path(_SCRATCH.name) / f"pristine-{storage}"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(TOPICS[0], IMAGE, typestore=TS)
        for k in range(30):
            writer.write(connection, 10 + k, TS.serialize_cdr(_image(10 + k, k), IMAGE))
    return path


PRISTINE = {storage: _write(storage) for storage in ("mcap", "sqlite3")}


def _damaged_copy(storage: str, cut: int, flips: list[tuple[int, int]], bare: bool) -> Path:
    source = PRISTINE[storage]
    target = Path(_SCRATCH.name) / "damaged"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (data_file,) = [p for p in target.iterdir() if p.suffix in (".mcap", ".db3")]
    data = bytearray(data_file.read_bytes())
    for position, value in flips:
        data[int(position * (len(data) - 1))] = value
    data_file.write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    return data_file if bare and storage == "mcap" else target


def _read(path: Path) -> tuple[int, object]:
    with bag_reader.BagReader(path) as bag:
        count = sum(1 for _ in bag.messages(TOPICS))
        return count, bag.issues


DAMAGE = (st.floats(0.0, 1.0), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)),
                                        max_size=8), st.booleans())


class TestDamagedRecording:
    @pytest.mark.parametrize("storage", sorted(PRISTINE))
    def test_pristine_reads_everything(self, storage):
        count, issues = _read(PRISTINE[storage])
        assert count == 30 and issues.count == 0 and issues.stopped is None

    @pytest.mark.parametrize("storage", sorted(PRISTINE))
    def test_messages_or_bag_error(self, storage):
        @settings(max_examples=SLOW)
        @given(*DAMAGE)
        def check(cut, flips, bare):
            path = _damaged_copy(storage, cut, flips, bare)
            try:
                count, issues = _read(path)
            except bag_reader.BagError as err:
                assert str(err)
                return
            assert 0 <= count <= 30 and issues.count <= 30
            if count + issues.count < 30 and not flips:  # a cut file: the reader says so
                assert issues.stopped, f"{30 - count - issues.count} messages lost silently"

        check()
