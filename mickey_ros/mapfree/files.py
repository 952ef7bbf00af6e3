"""Readers and writers for the Map-free text formats (intrinsics.txt, poses.txt, submissions).

Formats (reference/mapfree_benchmark.md §1.2, §1.5):
    intrinsics.txt: ``frame_path fx fy cx cy W H`` per line, lines containing ``#`` skipped.
    poses.txt:      ``frame_path qw qx qy qz tx ty tz`` (world-to-camera, scalar-first, metres).
    submission:     ``frame_path qw qx qy qz tx ty tz confidence``.

A bad line never aborts a read: it is skipped and recorded in ``ParseReport.skipped`` with the file,
line number and reason (naming the bad field and value), so callers can warn (or fail) with all
problems listed. Fields are separated by spaces, so a frame name cannot contain whitespace: the
writers refuse such a name and the readers say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from mickey_ros.utils.checks import check_file

INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy", "width", "height")


@dataclass
class ParseReport:
    """Lines skipped while parsing: (file, 1-based line number, reason)."""

    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)  # the frame name of each skipped line, or ''

    def add(self, path: str | Path, line_no: int, reason: str, frame: str = "") -> None:
        """Record a skipped line (and the frame it was for, when the line names one)."""
        self.skipped.append((str(path), line_no, reason))
        self.frames.append(frame)

    def summary(self, limit: int = 5) -> str:
        """One line per skipped entry (first ``limit``), for logs and CLI warnings."""
        lines = [f"{p}:{n}: {r}" for p, n, r in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one image: K (3, 3) float64 and the image size in pixels."""

    K: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class PoseEntry:
    """One pose line: world-to-camera (q_wxyz, t) and an optional confidence."""

    name: str
    q_wxyz: np.ndarray
    t: np.ndarray
    confidence: float | None = None


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] as float64."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _floats(tokens: list[str]) -> list[float] | None:
    try:
        values = [float(v) for v in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _frame_name_problem(name: str) -> str | None:
    if not name or any(c.isspace() for c in name):
        return (f"frame name {name!r} cannot appear in a Map-free file (its fields are separated "
                "by spaces, so a name must be non-empty without whitespace); rename the file")
    return None


def check_frame_name(name: str) -> str:
    """``name`` if the Map-free text formats can hold it (no whitespace), else a ValueError."""
    problem = _frame_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _text_lines(path: Path, what: str) -> list[str]:
    """Lines of a UTF-8 text file; a binary or mis-encoded file is a ValueError naming it."""
    check_file(path, what, (".txt",))
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err}); is it the right file?") \
            from None


def _bad_intrinsics_value(name: str, text: str) -> str | None:
    """Why one numeric field of an intrinsics line is unusable (naming it), or None."""
    try:
        value = float(text)
    except ValueError:
        return f"{name} = {text!r} is not a number"
    if not math.isfinite(value):
        return f"{name} = {text} is not a finite number"
    if name in ("fx", "fy") and value <= 0:
        return f"{name} = {text} must be positive (focal length in pixels)"
    if name in ("width", "height") and (value < 1 or value % 1):
        return f"{name} = {text} must be a whole number of pixels >= 1"
    return None


def parse_intrinsics_line(line: str) -> tuple[str, CameraIntrinsics | str]:
    """``(frame name, CameraIntrinsics)``, or ``(frame name, reason)`` naming the bad value."""
    tokens = line.split()
    name = " ".join(tokens[:-6]) if len(tokens) > 7 else tokens[0]
    if len(tokens) > 7 and _floats(tokens[-6:]) is not None:  # a name with spaces in it
        return name, str(_frame_name_problem(name))
    if len(tokens) != 7:
        return name, f"expected 'name fx fy cx cy width height' (7 fields), got {len(tokens)}"
    for field_name, text in zip(INTRINSICS_FIELDS, tokens[1:]):
        reason = _bad_intrinsics_value(field_name, text)
        if reason:
            return name, reason
    fx, fy, cx, cy, width, height = (float(v) for v in tokens[1:])
    return name, CameraIntrinsics(intrinsics_matrix(fx, fy, cx, cy), int(width), int(height))


def read_intrinsics(
    path: str | Path, report: ParseReport | None = None
) -> dict[str, CameraIntrinsics]:
    """Parse an intrinsics file into ``{frame_path: CameraIntrinsics}``.

    Raises:
        FileNotFoundError / IsADirectoryError: no file at ``path``.
        ValueError: if it is not UTF-8 text.
    """
    path = Path(path)
    report = ParseReport() if report is None else report
    out: dict[str, CameraIntrinsics] = {}
    for line_no, line in enumerate(_text_lines(path, "intrinsics file"), start=1):
        if "#" in line or not line.strip():
            continue
        name, parsed = parse_intrinsics_line(line)
        if isinstance(parsed, str):
            report.add(path, line_no, parsed, name)
        elif name in out:
            report.add(path, line_no, f"duplicate frame {name!r}; keeping the first", name)
        else:
            out[name] = parsed
    return out


def _common_tail(name: str, image: Path) -> int:
    """How many trailing path components an intrinsics line's name shares with ``image``."""
    a, b = PurePosixPath(name).parts, image.parts
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def lookup_intrinsics(path: str | Path, image: str | Path) -> CameraIntrinsics:
    """The line of ``image`` in a Map-free intrinsics file: the name sharing the most trailing
    path components with it (at least the file name).

    Raises:
        ValueError: the image's line is invalid (naming the line and the bad value), or there
            is no line for it (listing the file's names; a name with whitespace cannot be in
            the format at all).
    """
    path, image = Path(path), Path(image)
    report = ParseReport()
    table = read_intrinsics(path, report)
    best = max(table, key=lambda name: _common_tail(name, image), default=None)
    if best is not None and _common_tail(best, image):
        return table[best]
    for (_, line_no, reason), frame in zip(report.skipped, report.frames):
        if frame and _common_tail(frame, image):
            raise ValueError(f"{path}:{line_no}: the line for {image.name} is invalid: {reason}")
    if any(c.isspace() for c in image.name):
        check_frame_name(image.name)
    hint = f" (skipped lines: {report.summary()})" if report.skipped else ""
    raise ValueError(
        f"no line for {image} in {path}; it has {sorted(table)[:6]}{hint}. "
        "Name each image as in the file, or pass --ref-K/--query-K"
    )


def parse_pose_line(line: str, with_confidence: bool) -> PoseEntry | str:
    """Parse one pose or submission line; return a ``PoseEntry`` or the reason it is invalid."""
    tokens = line.split(" ") if with_confidence else line.split()
    expected = 9 if with_confidence else 8
    if len(tokens) != expected:
        return f"expected {expected} space-separated fields, got {len(tokens)}"
    values = _floats(tokens[1:])
    if values is None:
        return "non-numeric, NaN or Inf value"
    q = np.array(values[0:4])
    with np.errstate(over="ignore"):
        norm = np.linalg.norm(q)
    if norm < 1e-12:
        return "quaternion has zero norm"
    if not np.isfinite(norm):  # e.g. 1e200: normalising it later would give a wrong rotation
        return "quaternion norm overflows; write a unit quaternion"
    confidence = values[7] if with_confidence else None
    if confidence is not None and confidence < 0:
        return "confidence must be >= 0"
    return PoseEntry(tokens[0], q, np.array(values[4:7]), confidence)


def read_poses(
    path: str | Path, report: ParseReport | None = None, with_confidence: bool = False
) -> list[PoseEntry]:
    """Parse a poses (or submission, ``with_confidence=True``) file, keeping line order.

    Order matters: the Map-free evaluator samples every 5th line by position, not by frame number.
    Duplicate frame names are skipped after the first.
    """
    path = Path(path)
    report = ParseReport() if report is None else report
    entries: list[PoseEntry] = []
    seen: set[str] = set()
    for line_no, line in enumerate(_text_lines(path, "poses file"), start=1):
        if not line.strip() or "#" in line:
            continue
        parsed = parse_pose_line(line.strip(), with_confidence)
        if isinstance(parsed, str):
            report.add(path, line_no, parsed)
        elif parsed.name in seen:
            report.add(path, line_no, f"duplicate frame {parsed.name!r}; keeping the first")
        else:
            seen.add(parsed.name)
            entries.append(parsed)
    return entries


def format_pose_line(
    name: str, q_wxyz: np.ndarray, t: np.ndarray, confidence: float | None = None
) -> str:
    """One line in poses.txt format (or submission format when ``confidence`` is given)."""
    fields = [check_frame_name(name)] + [f"{v:.6f}" for v in (*q_wxyz, *t)]
    if confidence is not None:
        fields.append(repr(float(confidence)))
    return " ".join(fields)


def write_poses(path: str | Path, entries: list[PoseEntry]) -> None:
    """Write poses.txt (or a submission file when entries carry a confidence)."""
    lines = [format_pose_line(e.name, e.q_wxyz, e.t, e.confidence) for e in entries]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def write_intrinsics(path: str | Path, intrinsics: dict[str, CameraIntrinsics]) -> None:
    """Write an intrinsics.txt file in Map-free format."""
    lines = []
    for name, cam in intrinsics.items():
        check_frame_name(name)
        K = cam.K
        lines.append(
            f"{name} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f} "
            f"{cam.width} {cam.height}"
        )
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
