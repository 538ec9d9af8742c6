"""Folders of inputs: images (through a spec) and ``.npy``/``.npz`` arrays (as they are), in name
order, each checked against the model input's shape with a message that names the spec key to change."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from npuflow._io import read_arrays
from npuflow.errors import InputError
from npuflow.preprocess.image import load_image
from npuflow.preprocess.spec import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, PreprocessSpec, _is_int

#: the package's logger (one name for every preprocessing message)
log = logging.getLogger("npuflow.preprocess")

# ----------------------------------------------------------------------------- folders
def folder_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Files of ``folder`` that :func:`iter_folder` reads, sorted by name (code-point order).

    Images (.jpg .jpeg .png .bmp) and arrays (.npy .npz), case-insensitive. Other files and
    sub-folders are skipped with one logged warning; hidden files (name starting with '.') are
    skipped silently. Raises InputError when the folder is missing or has no usable file."""
    d = Path(folder)
    if not d.exists():
        raise InputError(f"input folder not found: {d}")
    if not d.is_dir():
        raise InputError(f"{d} is not a folder; give a folder of images or .npy/.npz arrays")
    names = sorted(os.listdir(d))
    if not names:
        raise InputError(f"input folder {d} is empty; put images ({' '.join(IMAGE_EXTENSIONS)}) or arrays "
                         f"({' '.join(ARRAY_EXTENSIONS)}) in it")
    use: list[Path] = []
    skipped: list[str] = []
    for n in names:
        p = d / n
        if n.startswith("."):
            log.debug("skipping hidden file %s", p)
        elif p.is_dir():
            skipped.append(n + "/")
        elif p.suffix.lower() in IMAGE_EXTENSIONS + ARRAY_EXTENSIONS:
            use.append(p)
        else:
            skipped.append(n)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        log.warning("%s: skipped %d entr%s that %s not an image (%s) or array (%s): %s", d, len(skipped),
                    "y" if len(skipped) == 1 else "ies", "is" if len(skipped) == 1 else "are",
                    " ".join(IMAGE_EXTENSIONS), " ".join(ARRAY_EXTENSIONS), shown)
    if not use:
        raise InputError(f"input folder {d} has no image ({' '.join(IMAGE_EXTENSIONS)}) or array "
                         f"({' '.join(ARRAY_EXTENSIONS)}) file" + (f"; skipped: {', '.join(skipped[:10])}" if skipped else ""))
    return use


def _dims_match(expected: Sequence[Any], given: Sequence[Any]) -> bool:
    return len(expected) == len(given) and all(
        not _is_int(e) or int(e) < 0 or g is None or int(e) == int(g) for e, g in zip(expected, given)
    )


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if (d is None or not _is_int(d) or int(d) < 0) else str(int(d)) for d in shape) + "]"


def check_shape(spec: PreprocessSpec | None, model_shape: Sequence[Any], given: Sequence[Any], *, where: str) -> None:
    """Raise InputError when ``given`` (a result's shape; None = depends on the image) does not fit
    ``model_shape`` (ints; None, a string or a negative int = any). The message gives both shapes and
    the spec step to change (``spec`` None: an array file used as is)."""
    expected = list(model_shape)
    given = list(given)
    if _dims_match(expected, given):
        return
    hints: list[str] = []
    if spec is None:
        hints.append("arrays are used as they are: save them in the model's shape (or without its batch axis of 1)")
    elif len(expected) != 4:
        hints.append(f"images give a 4-D [1, C, H, W] / [1, H, W, C] input but this model input is {len(expected)}-D; "
                     "give preprocessed .npy arrays instead")
    else:
        other = "NHWC" if spec.layout == "NCHW" else "NCHW"
        swapped = [given[0], given[3], given[1], given[2]] if spec.layout == "NHWC" else [given[0], given[2], given[3], given[1]]
        c_axis, hw_axes = (1, (2, 3)) if spec.layout == "NCHW" else (3, (1, 2))
        e_c, e_hw = expected[c_axis], (expected[hw_axes[0]], expected[hw_axes[1]])
        if _dims_match(expected, swapped) and given[c_axis] != given[hw_axes[0]]:
            hints.append(f"set layout={other}")
        else:
            if _is_int(expected[0]) and int(expected[0]) > 1:
                hints.append(f"images give a batch of 1 but the model's batch is {expected[0]}: fix the batch dim to 1")
            if not _dims_match([e_c], [given[c_axis]]):
                if _is_int(e_c) and int(e_c) == 1:
                    hints.append("set order=GRAY (the model wants 1 channel)")
                elif _is_int(e_c) and int(e_c) == 3:
                    hints.append("set order=RGB or order=BGR (the model wants 3 channels)")
                else:
                    hints.append(f"the model wants {e_c} channels; images give 1 (GRAY) or 3 (RGB/BGR): give .npy arrays, "
                                 f"or check layout (now {spec.layout})")
            if not _dims_match(list(e_hw), [given[hw_axes[0]], given[hw_axes[1]]]):
                want = "x".join(str(d) for d in e_hw)
                if spec.crop is not None:
                    hints.append(f"set crop={want} (HxW)")
                elif spec.resize == "letterbox":
                    hints.append(f"set letterbox={want} (HxW)")
                elif spec.resize == "exact":
                    hints.append(f"set resize={want} (sizes are HxW, height first)")
                elif spec.resize == "shorter":
                    hints.append(f"add crop={want} after resize={spec.size[0]}, or use resize={want}")
                else:
                    hints.append(f"add resize={want} (or resize=N,crop={want})")
    raise InputError(
        f"{where}: the input has shape {_fmt(given)}, but the model input expects {_fmt(expected)}"
        + ("; " + "; ".join(hints) if hints else "")
    )


def _load_arrays(p: Path, model_shape: Sequence[Any]) -> Iterator[np.ndarray]:
    """The arrays of one .npy/.npz file, read by ``npuflow._io.read_arrays``: every header (dtype,
    declared size, shape against the model input) is checked before any data is read."""
    expected = list(model_shape)

    def batch_fix(shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        if len(expected) >= 1 and len(shape) == len(expected) - 1 and (not _is_int(expected[0]) or int(expected[0]) in (1, -1)):
            return (1,) + shape  # saved without the batch axis of 1
        return shape

    def check(where: str, shape: tuple[int, ...]) -> None:
        check_shape(None, expected, batch_fix(shape), where=where)

    for _where, a in read_arrays(p, check_shape=check):
        yield a.reshape(batch_fix(a.shape))


def iter_folder(
    folder: str | os.PathLike[str], spec: PreprocessSpec, *, model_shape: Sequence[Any]
) -> Iterator[np.ndarray]:
    """One model input per image (and per array in .npy/.npz files) of ``folder``, files sorted by name.

    Images go through ``spec``; ``.npy`` holds one input, ``.npz`` one input per array in its stored
    order; arrays are loaded with ``allow_pickle=False``, not preprocessed, and may omit the batch
    axis of 1. Every result must match ``model_shape`` (None/-1/a name: any size) or InputError says
    which file, both shapes and which spec key to change. The folder is listed (and the spec's fixed
    output shape checked) when this is called; files are read lazily as the iterator advances.
    """
    files = folder_files(folder)
    expected = list(model_shape)
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
        check_shape(spec, expected, spec.output_shape(), where=f"preprocess spec {spec.to_text()!r}")

    def gen() -> Iterator[np.ndarray]:
        for p in files:
            if p.suffix.lower() in ARRAY_EXTENSIONS:
                yield from _load_arrays(p, expected)
            else:
                x = load_image(p, spec)
                check_shape(spec, expected, x.shape, where=str(p))
                yield x

    return gen()
