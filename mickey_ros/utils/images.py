"""Image loading and preprocessing at the library boundary.

Convention:
    Images cross public APIs as RGB uint8 numpy arrays (H, W, 3). Inside, they are float [0, 1]
    tensors (B, 3, H, W) with **no** mean/std normalisation (MicKey feeds raw RGB to DINOv2).
    Files are read as stored (sensor orientation, like their intrinsics): EXIF orientation is
    not applied. Intrinsics follow the pixel-centre convention on resize (reference/mickey.md
    §2); the crop to a multiple of the patch size keeps the top-left corner, so K is unchanged
    by it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from mickey_ros.utils.checks import check_file

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


class ImageError(ValueError):
    """An input image cannot be used; the message says why and what to do."""


def check_rgb_image(image: np.ndarray, name: str = "image", min_size: int = 1) -> None:
    """Raise ``ImageError`` unless ``image`` is a non-empty RGB uint8 array (H, W, 3).

    The size a network needs is checked once, on the network input, by ``check_network_input``.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{name} must be RGB with shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"{name} must be uint8, got {image.dtype}; convert with .astype(np.uint8)")
    if image.shape[0] < min_size or image.shape[1] < min_size:
        raise ImageError(
            f"{name} is {image.shape[1]}x{image.shape[0]} px; "
            f"at least {min_size}x{min_size} is needed"
        )


def check_network_input(width: int, height: int, min_side: int, name: str = "image") -> None:
    """The one minimum-size rule: each side of the network input must be >= ``min_side`` px.

    ``min_side`` is the model's patch size times its (2 * border + 1) cells (98 px for MicKey).
    """
    if min(width, height) < min_side:
        raise ImageError(
            f"{name} is {width}x{height} px at the network input, below this model's minimum of "
            f"{min_side} px per side; use a larger image or working size (--size WxH on the "
            "command line, EstimatorConfig.resize in Python, model.input_width/height in the node)"
        )


def _to_rgb8(raw: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """OpenCV's decoded array (any depth, 1/3/4 channels, BGR order) -> RGB uint8, and a note."""
    notes = []
    if raw.dtype == np.uint16:  # 16-bit PNG/TIFF: keep the high byte, as viewers show it
        raw, notes = (raw >> 8).astype(np.uint8), ["16-bit, scaled to 8-bit"]
    elif raw.dtype != np.uint8:
        raise ImageError(f"image {path} has {raw.dtype} pixels; save it as 8-bit JPEG or PNG")
    if raw.ndim == 2 or raw.shape[2] == 1:
        return np.repeat(raw.reshape(*raw.shape[:2], 1), 3, axis=2), ", ".join(
            [*notes, "grayscale, copied to R, G and B"])
    if raw.shape[2] == 4:
        notes.append("RGBA, alpha channel dropped")
    return np.ascontiguousarray(raw[:, :, 2::-1]), ", ".join(notes)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # named when a directory is given for an image
EXIF_ROTATIONS = {2: "mirrored", 3: "rotated 180 degrees", 4: "flipped upside down",
                  5: "mirrored and rotated 90 degrees", 6: "rotated 90 degrees clockwise",
                  7: "mirrored and rotated 90 degrees", 8: "rotated 90 degrees anticlockwise"}


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (0x0112) of a JPEG's APP1 segment; 1 (as stored) when absent."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        tiff = data[pos + 10:pos + 2 + length]
        if data[pos + 1] == 0xE1 and data[pos + 4:pos + 10] == b"Exif\0\0" and len(tiff) >= 8:
            order = "little" if tiff[:2] == b"II" else "big"
            ifd = int.from_bytes(tiff[4:8], order)
            count = int.from_bytes(tiff[ifd:ifd + 2], order)
            for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
                if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
                    return int.from_bytes(tiff[entry + 8:entry + 10], order)
            return 1
        pos += 2 + length
    return 1


def check_complete_jpeg(data: bytes, name: str | Path,
                        fix: str = "copy or export the file again") -> None:
    """Refuse a JPEG cut off before its end marker (libjpeg only warns and fills in grey).

    Other data (PNG, not an image) passes; ``name`` names the file or message in the error and
    ``fix`` says what to do.

    Entropy-coded data cannot contain ``FF D9`` (a data byte FF is stuffed as ``FF 00``), so a
    complete file has an end-of-image marker after its last start-of-scan. A PNG cut off fails
    to decode (libpng errors) and needs no check here.
    """
    if data[:2] != b"\xff\xd8":
        return
    last_scan = data.rfind(b"\xff\xda")
    if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
        raise ImageError(
            f"image {name} is a truncated JPEG ({len(data)} bytes, no end-of-image marker); "
            f"{fix}")


def load_rgb(path: str | Path, note: Callable[[str], object] | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), the pixels as stored (sensor orientation).

    The EXIF orientation tag is **not** applied: a camera's intrinsics are calibrated in sensor
    orientation, and rotating the pixels for display would break K. A file that carries a
    rotation gets a note saying so.

    Args:
        path: JPEG/PNG (any format OpenCV reads).
        note: called once with one line when the file is not 8-bit colour (grayscale, RGBA,
            16-bit) and had to be converted, or carries an EXIF rotation; None is silent.

    Raises:
        FileNotFoundError / IsADirectoryError: no file at ``path``.
        ImageError: the file cannot be decoded or is a truncated JPEG.
    """
    import cv2

    path = check_file(path, "image file", IMAGE_SUFFIXES, hint="; check the path")
    data = path.read_bytes()
    check_complete_jpeg(data, path)
    # PNG unchanged, to see an alpha channel; other formats: any colour/depth, as stored
    flags = (cv2.IMREAD_UNCHANGED if path.suffix.lower() == ".png" else
             cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if raw is None:
        raise ImageError(f"cannot decode image {path}: it is truncated, corrupt or not an image; "
                         "pass a complete JPEG/PNG file")
    rgb, converted = _to_rgb8(raw, path)
    orientation = _exif_orientation(data) if note and data[:2] == b"\xff\xd8" else 1
    if note is not None and orientation in EXIF_ROTATIONS:
        note(f"{path} has EXIF orientation {orientation} ({EXIF_ROTATIONS[orientation]} for "
             "display); it is read as stored (sensor orientation), so its intrinsics must be "
             "for the stored pixels; to use the displayed view, rotate the pixels (e.g. "
             "`mogrify -auto-orient`) and calibrate K for it")
    if converted and note is not None:
        note(f"{path} is {converted}")
    return rgb


DEPTH_PNG_METRES_PER_UNIT = 0.001  # the common RGB-D convention: millimetres


def save_depth_png(
    path: str | Path, depth_m: np.ndarray, metres_per_unit: float = DEPTH_PNG_METRES_PER_UNIT
) -> Path:
    """Write depth in metres (H, W) as a 16-bit PNG that ``load_depth_png`` reads back.

    0 (or NaN) means unknown; values round to the nearest unit (half a unit of error) and saturate
    at 65535 units (65.535 m in millimetres).
    """
    import cv2

    units = np.rint(np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0) / metres_per_unit)
    path = Path(path)
    cv2.imwrite(str(path), np.clip(units, 0, 65535).astype(np.uint16))
    return path


def load_depth_png(
    path: str | Path, metres_per_unit: float = DEPTH_PNG_METRES_PER_UNIT
) -> np.ndarray:
    """Read a single-channel 16-bit depth PNG as float32 metres (H, W); 0 stays 0 (unknown)."""
    import cv2

    path = check_file(path, "depth image", (".png",))
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
        found = "undecodable" if raw is None else f"{raw.dtype} with shape {raw.shape}"
        raise ImageError(
            f"depth image {path} must be a single-channel 16-bit PNG, got {found}; "
            "write depth as uint16 PNG (e.g. millimetres) next to the colour frame"
        )
    return raw.astype(np.float32) * np.float32(metres_per_unit)


def scale_intrinsics(K: ArrayT, sx: float, sy: float) -> ArrayT:
    """Rescale (..., 3, 3) intrinsics for a resize by (sx, sy) = (W_new/W, H_new/H).

    Pixel-centre convention: ``fx' = sx fx``, ``cx' = sx cx + sx/2 - 1/2`` (same for y).
    Works for numpy arrays and torch tensors.

    >>> scale_intrinsics(np.array([[100., 0, 50], [0, 100, 40], [0, 0, 1]]), 0.5, 0.5)[0].round(6)
    array([50.  ,  0.  , 24.75])
    """
    out = K * 1.0
    out[..., 0, :] = sx * K[..., 0, :] + (sx / 2 - 0.5) * K[..., 2, :]
    out[..., 1, :] = sy * K[..., 1, :] + (sy / 2 - 0.5) * K[..., 2, :]
    return out


def resize_with_intrinsics(
    image: np.ndarray, K: np.ndarray, size_wh: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an RGB image to ``size_wh = (W, H)`` (bilinear, as OpenCV) and rescale K to match."""
    if size_wh is None or (image.shape[1], image.shape[0]) == tuple(size_wh):
        return image, np.asarray(K, dtype=np.float64)
    import cv2

    W, H = (int(v) for v in size_wh)
    if W < 1 or H < 1:
        raise ImageError(f"resize target {W}x{H} must be positive, e.g. 720x540")
    resized = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)
    sx, sy = W / image.shape[1], H / image.shape[0]
    return resized, scale_intrinsics(np.asarray(K, dtype=np.float64), sx, sy)


def to_tensor(image: np.ndarray) -> Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    array = np.ascontiguousarray(image)
    if any(stride < 0 for stride in array.strides):  # size-1 axes of a flipped view keep theirs
        array = array.copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def crop_to_multiple(image: Tensor, multiple: int = 14) -> Tensor:
    """Crop (..., H, W) to multiples of ``multiple`` keeping the top-left corner (K unchanged)."""
    H, W = image.shape[-2:]
    return image[..., : H - H % multiple, : W - W % multiple]
