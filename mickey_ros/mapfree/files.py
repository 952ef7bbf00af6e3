"""Readers and writers for the Map-free text formats (intrinsics.txt, poses.txt, submissions).

Formats (reference/mapfree_benchmark.md §1.2, §1.5):
    intrinsics.txt: ``frame_path fx fy cx cy W H`` per line, lines containing ``#`` skipped.
    poses.txt:      ``frame_path qw qx qy qz tx ty tz`` (world-to-camera, scalar-first, metres).
    submission:     ``frame_path qw qx qy qz tx ty tz confidence``.

A bad line never aborts a read: it is skipped and recorded in ``ParseReport.skipped`` with the file,
line number and reason, so callers can warn (or fail) with all problems listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ParseReport:
    """Lines skipped while parsing: (file, 1-based line number, reason)."""

    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, path: str | Path, line_no: int, reason: str) -> None:
        """Record a skipped line."""
        self.skipped.append((str(path), line_no, reason))

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


def _text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file; a binary or mis-encoded file is a ValueError naming it."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err}); is it the right file?") \
            from None


def read_intrinsics(
    path: str | Path, report: ParseReport | None = None
) -> dict[str, CameraIntrinsics]:
    """Parse an intrinsics file into ``{frame_path: CameraIntrinsics}``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not UTF-8 text.
    """
    path = Path(path)
    report = ParseReport() if report is None else report
    out: dict[str, CameraIntrinsics] = {}
    for line_no, line in enumerate(_text_lines(path), start=1):
        if "#" in line or not line.strip():
            continue
        tokens = line.split()
        values = _floats(tokens[1:]) if len(tokens) == 7 else None
        if values is None:
            report.add(
                path, line_no, "expected 'name fx fy cx cy width height' with finite numbers"
            )
            continue
        fx, fy, cx, cy, width, height = values
        if fx <= 0 or fy <= 0 or width < 1 or height < 1 or width % 1 or height % 1:
            report.add(path, line_no, "fx and fy must be positive, width and height whole pixels")
            continue
        if tokens[0] in out:
            report.add(path, line_no, f"duplicate frame {tokens[0]!r}; keeping the first")
            continue
        out[tokens[0]] = CameraIntrinsics(
            intrinsics_matrix(fx, fy, cx, cy), int(width), int(height)
        )
    return out


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
    for line_no, line in enumerate(_text_lines(path), start=1):
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
    fields = [name] + [f"{v:.6f}" for v in (*q_wxyz, *t)]
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
        K = cam.K
        lines.append(
            f"{name} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f} "
            f"{cam.width} {cam.height}"
        )
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
