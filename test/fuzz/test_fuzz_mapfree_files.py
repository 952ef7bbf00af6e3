"""Fuzzing of the Map-free text parsers and the submission reader (issue 9).

Property: a bad line is skipped and reported (file, line, reason), a valid one gives an entry with
the documented invariants; a file-level problem is a ``ValueError`` / ``FileNotFoundError`` with
a message. Never another exception.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mickey_ros.eval.pairs import read_pairs
from mickey_ros.eval.score import parse_submission_text, read_submission
from mickey_ros.geometry.pose import quat_wxyz_to_rotmat
from mickey_ros.mapfree.dataset import frame_number
from mickey_ros.mapfree.files import (
    ParseReport,
    format_pose_line,
    parse_pose_line,
    read_intrinsics,
    read_poses,
)

NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "0", "-0.0", "0.5", "1_0", "", "x", "0x10", "١٢"]),
)
NAME = st.one_of(st.sampled_from(["seq0/frame_00000.jpg", "seq1/frame_00005.jpg",
                                  "seq1/frame_00010.jpg", "frame_0000\u00b2.jpg", "a#b"]),
                 st.text(min_size=0, max_size=12))
SLOW = max(10, settings.default.max_examples // 3)


@st.composite
def lines(draw, fields: int):
    """A line of ``fields`` tokens give or take one, with odd separators now and then."""
    count = draw(st.integers(max(fields - 2, 0), fields + 1))
    tokens = [draw(NAME)] + [draw(NUMBER_TEXT) for _ in range(count - 1)]
    separator = draw(st.sampled_from([" ", " ", " ", "  ", "\t"]))
    return separator.join(tokens)


_SCRATCH = tempfile.TemporaryDirectory(prefix="mickey_fuzz_")  # removed at exit


def _temp_file(text: str | bytes) -> Path:
    path = Path(_SCRATCH.name) / "file.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


class TestParsePoseLine:
    @given(lines(9), st.booleans())
    @example("seq1/frame_00000.jpg 1e154 0 0 1e154 0 0 0 1", True)  # its norm overflowed
    def test_entry_or_reason(self, line, with_confidence):
        parsed = parse_pose_line(line, with_confidence)
        if isinstance(parsed, str):
            assert parsed
            return
        assert np.all(np.isfinite(parsed.q_wxyz)) and np.linalg.norm(parsed.q_wxyz) >= 1e-12
        R = quat_wxyz_to_rotmat(torch.from_numpy(parsed.q_wxyz)).numpy()  # what scoring uses
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        q_unit = parsed.q_wxyz / np.abs(parsed.q_wxyz).max()
        R_unit = quat_wxyz_to_rotmat(torch.from_numpy(q_unit)).numpy()
        np.testing.assert_allclose(R, R_unit, atol=1e-9)  # non-unit quaternions are normalised
        assert parsed.t.shape == (3,) and np.all(np.isfinite(parsed.t))
        if with_confidence:
            assert math.isfinite(parsed.confidence) and parsed.confidence >= 0
        else:
            assert parsed.confidence is None

    @given(st.from_regex(r"seq[0-9]/frame_[0-9]{5}\.jpg", fullmatch=True),
           st.lists(st.floats(-1e3, 1e3), min_size=7, max_size=7),
           st.one_of(st.none(), st.floats(0.0, 1e6)))
    def test_format_round_trip(self, name, values, confidence):
        q = np.array(values[:4])
        if np.linalg.norm(q) < 1e-3:
            q[0] = 1.0
        parsed = parse_pose_line(format_pose_line(name, q, np.array(values[4:]), confidence),
                                 with_confidence=confidence is not None)
        assert parsed.name == name and parsed.confidence == confidence
        np.testing.assert_allclose(parsed.q_wxyz, q, atol=1e-6)
        np.testing.assert_allclose(parsed.t, values[4:], atol=1e-6)


class TestReadIntrinsics:
    @settings(max_examples=SLOW)
    @given(st.lists(lines(7), max_size=8))
    @example(["seq1/frame_00000.jpg 500 500 0 0 0.5 0.5"])  # was read as a 0x0 image
    @example(["seq1/frame_00000.jpg 500 500 0 0 640.7 480"])  # was truncated to 640
    def test_valid_entries_or_reported_lines(self, text_lines):
        report = ParseReport()
        text = "\n".join(text_lines)
        table = read_intrinsics(_temp_file(text), report)
        for cam in table.values():
            assert np.all(np.isfinite(cam.K)) and cam.K[0, 0] > 0 and cam.K[1, 1] > 0
            assert isinstance(cam.width, int) and cam.width >= 1
            assert isinstance(cam.height, int) and cam.height >= 1
        assert all(reason for _, _, reason in report.skipped)
        nonblank = [t for t in text.splitlines() if t.strip() and "#" not in t]
        assert len(table) + len(report.skipped) == len(nonblank)

    @settings(max_examples=SLOW)
    @given(st.binary(max_size=64))
    def test_binary_file_is_a_value_error(self, data):
        try:
            read_intrinsics(_temp_file(data))
        except ValueError as err:
            assert "file.txt" in str(err)


class TestReadPoses:
    @settings(max_examples=SLOW)
    @given(st.lists(lines(8), max_size=8), st.booleans())
    def test_order_and_uniqueness(self, text_lines, with_confidence):
        report, text = ParseReport(), "\n".join(text_lines)
        entries = read_poses(_temp_file(text), report, with_confidence)
        names = [e.name for e in entries]
        assert len(names) == len(set(names))
        valid = [parse_pose_line(t.strip(), with_confidence) for t in text.splitlines()
                 if t.strip() and "#" not in t]
        first = list(dict.fromkeys(p.name for p in valid if not isinstance(p, str)))
        assert names == first  # line order kept, duplicates after the first dropped


class TestSubmissionParsing:
    @given(st.lists(lines(9), max_size=10))
    def test_entries_have_unique_frame_numbers(self, text_lines):
        report = ParseReport()
        entries = parse_submission_text("\n".join(text_lines), "pose_s00000.txt", report)
        numbers = [frame_number(e.name) for e in entries]
        assert len(numbers) == len(set(numbers))
        assert all(e.confidence >= 0 for e in entries)
        assert all(label == "pose_s00000.txt" and reason for label, _, reason in report.skipped)

    @given(st.text(max_size=14))
    @example("frame_0000\u00b2.jpg")  # isdigit() but not an int: was a bare int() error
    def test_frame_number_int_or_value_error(self, name):
        try:
            number = frame_number(name)
        except ValueError as err:
            assert "seqN/frame_XXXXX.jpg" in str(err)
            return
        assert 0 <= number <= 99999 and f"{number:05d}" == name[-9:-4]

    @settings(max_examples=SLOW)
    @given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
           st.integers(0, 400), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    def test_damaged_zip_is_a_value_error(self, flips, cut, compression):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            archive.writestr("pose_s00000.txt", "seq1/frame_00000.jpg 1 0 0 0 0 0 0 5\n" * 4)
            archive.writestr("notes/readme.txt", "hello")
        data = bytearray(buffer.getvalue())
        for index, value in flips:
            data[index % len(data)] = value
        path = _temp_file(bytes(data[: len(data) - cut] if cut < len(data) else data))
        try:
            submitted = read_submission(path, ParseReport())
        except ValueError as err:
            assert str(path) in str(err)
            return
        assert set(submitted) <= {"s00000"}


PAIR_FIELDS = st.sampled_from([26, 28, 36, 38, 25, 3])


class TestReadPairs:
    @settings(max_examples=SLOW)
    @given(st.lists(PAIR_FIELDS.flatmap(lambda n: lines(n)), min_size=1, max_size=4))
    def test_pairs_or_value_error_naming_the_line(self, text_lines):
        path = _temp_file("\n".join(text_lines))
        try:
            pairs = read_pairs(path)
        except ValueError as err:
            assert str(path) in str(err)
            return
        for pair in pairs:
            R = pair.T_1_0[:3, :3]
            assert np.all(np.isfinite(pair.T_1_0))
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-3)
