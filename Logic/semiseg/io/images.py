"""Reading and writing volumes with SimpleITK, with the checks that name the file and the problem.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD and any other single-file format
SimpleITK reads, and DICOM series folders (the first series found in the folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

__all__ = ["read_image", "read_labels", "write_like", "check_same_geometry", "volume_name", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = ("nii.gz", "nrrd", "mha")


def volume_name(path: str | os.PathLike) -> str:
    """The file name without its (double) extension: ``/a/patient1.nii.gz`` -> ``patient1``."""
    name = Path(path).name
    for ext in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _open_check(path: Path) -> None:
    """Refuse a path that cannot be opened, saying why (not "does not exist" for a permission problem)."""
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError as err:
        raise InputError(f"cannot be read ({err.strerror or err})", path) from None


_NIFTI_FLOATS = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # float32, float64, complex64, complex128 (as float pairs)


def _nifti_layout(header: bytes) -> tuple[str, int, int, int] | None:
    """``(endian, datatype, data bytes, data offset)`` declared by a NIfTI-1 or NIfTI-2 header, else ``None``."""
    import struct

    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = max(int(struct.unpack(endian + "f", header[108:112])[0]), 352)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = max(struct.unpack(endian + "q", header[168:176])[0], 544)
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0 or any(d < 1 for d in dims[1 : dims[0] + 1]):
        return None  # SimpleITK says what is wrong
    voxels = 1
    for d in dims[1 : dims[0] + 1]:
        voxels *= int(d)
    return endian, int(datatype), voxels * int(bitpix) // 8, int(offset)


def _check_nifti(path: Path, chunk: int = 1 << 24) -> None:
    """Compare a NIfTI file's data with what its header declares, before SimpleITK reads it.

    SimpleITK reads a truncated ``.nii``/``.nii.gz`` as a zero-filled volume, allocates whatever a
    header declares (a 384-byte file may declare gigabytes), and turns NaN and infinite voxels into 0.
    This streams the (decompressed) data once, in chunks, counting its bytes and non-finite values.

    Raises:
        InputError: truncated file or data, or NaN/infinite voxels.
    """
    import gzip
    import zlib

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
            layout = _nifti_layout(header)
            if layout is None:
                return
            endian, datatype, expected, offset = layout
            if not path.name.lower().endswith(".gz") and path.stat().st_size < offset + expected:
                raise InputError(f"is truncated: its header declares {offset + expected} bytes, the file has "
                                 f"{path.stat().st_size}", path)
            f.seek(offset)
            dtype = np.dtype(endian + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
            seen, bad, rest = 0, 0, b""
            while seen < expected:
                block = f.read(min(chunk, expected - seen))
                if not block:
                    break
                seen += len(block)
                if dtype is not None:
                    block = rest + block
                    whole = len(block) - len(block) % dtype.itemsize
                    bad += int((~np.isfinite(np.frombuffer(block[:whole], dtype))).sum())
                    rest = block[whole:]
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputError(f"is truncated or damaged ({err})", path) from None
    except OSError as err:
        raise InputError(f"cannot be read ({err.strerror or err})", path) from None
    if seen < expected:
        raise InputError(
            f"is truncated: its header declares {expected} bytes of voxel data, the file holds {seen}", path
        )
    if bad:
        raise InputError(f"holds {bad} NaN or infinite voxel(s)", path)


def _read(path: str | os.PathLike) -> sitk.Image:
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    _open_check(path)
    if path.name.lower().endswith((".nii", ".nii.gz")) and path.is_file():
        _check_nifti(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError("folder holds no DICOM series", path)
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            return reader.Execute()
        return sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
        raise InputError(f"cannot be read as an image ({first})", path) from None


def _check_scalar_3d(image: sitk.Image, path: str | os.PathLike, min_size: int) -> None:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector image); "
            "a grey-level volume is needed",
            path,
        )
    if image.GetDimension() == 4:
        raise InputError(f"is 4D (size {image.GetSize()}); export one time point as a 3D volume", path)
    if image.GetDimension() != 3:
        raise InputError(f"is {image.GetDimension()}D; a 3D volume is needed", path)
    small = [s for s in image.GetSize() if s < 1]
    if small or sorted(image.GetSize())[1] < min_size:
        raise InputError(
            f"is too small to slice (size {image.GetSize()}); two axes of at least {min_size} voxels are needed", path
        )


def read_image(path: str | os.PathLike, min_size: int = 8) -> tuple[np.ndarray, sitk.Image]:
    """Read a grey-level volume.

    Returns:
        ``(array, image)``: a float32 array in numpy order (K, J, I) and the SimpleITK image
        (for its geometry).

    Raises:
        InputError: missing/unreadable file, 4D, RGB/vector, too small, NaN or Inf voxels.
    """
    image = _read(path)
    _check_scalar_3d(image, path, min_size)
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise InputError(f"holds {int(bad.sum())} NaN or infinite voxel(s)", path)
    return array, image


def read_labels(path: str | os.PathLike, num_classes: int | None = None) -> tuple[np.ndarray, sitk.Image]:
    """Read a label map (0 = background / unlabelled, 1..C-1 = classes).

    Args:
        num_classes: the declared number of classes including background; ``None`` derives it.

    Raises:
        InputError: unreadable, not 3D scalar, non-integer or negative values, values >= num_classes.
    """
    image = _read(path)
    _check_scalar_3d(image, path, 1)
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise InputError("holds non-integer values; a label map of class indices is needed", path)
    if array.size and array.min() < 0:
        raise InputError(f"holds negative label value {int(array.min())}", path)
    array = array.astype(np.int64)
    if num_classes is not None and array.size and array.max() >= num_classes:
        found = sorted(int(v) for v in np.unique(array) if v >= num_classes)
        raise InputError(f"holds label value(s) {found} outside the declared classes 0..{num_classes - 1}", path)
    return array.astype(np.uint8 if array.max(initial=0) < 256 else np.int32), image


def check_same_geometry(a: sitk.Image, b: sitk.Image, path_b: str | os.PathLike, tol: float = 1e-4) -> None:
    """Raise :class:`InputError` unless ``b`` lies on ``a``'s grid (size, spacing, origin, direction)."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {b.GetSize()} != image size {a.GetSize()}")
    for what, va, vb in (
        ("spacing", a.GetSpacing(), b.GetSpacing()),
        ("origin", a.GetOrigin(), b.GetOrigin()),
        ("direction", a.GetDirection(), b.GetDirection()),
    ):
        scale = max(1.0, *(abs(x) for x in va))
        if any(abs(x - y) > tol * scale for x, y in zip(va, vb)):
            problems.append(f"{what} {tuple(round(x, 4) for x in vb)} != image {what} {tuple(round(x, 4) for x in va)}")
    if problems:
        raise InputError("does not lie on the image's grid: " + "; ".join(problems), path_b)


def write_like(array: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> Path:
    """Write ``array`` (numpy order K, J, I) with ``reference``'s geometry; returns the path."""
    image = sitk.GetImageFromArray(array)
    if image.GetSize() != reference.GetSize():
        raise ValueError(f"array size {image.GetSize()} does not match reference size {reference.GetSize()}")
    image.CopyInformation(reference)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path
