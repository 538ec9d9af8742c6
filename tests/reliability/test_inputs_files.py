"""Issue 18, case 10 and the empty batch: every .npy/.npz npuflow reads goes through
``npuflow._io.read_arrays``, which checks the headers (numeric dtype, declared size against the file,
shape against the model input) before any data is read."""
from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

import ktc
import npuflow
from npuflow._io import read_arrays
from npuflow.cli import main
from npuflow.errors import InputError
from npuflow.preprocess import iter_folder, parse

from tests.reliability import _models as M

SHAPE = [1, 2, 6, 6]


def _header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def npy_claiming(path, shape, descr="<f4", data=b""):
    """A .npy whose header declares ``shape`` but that holds only ``data``."""
    path.write_bytes(_header(shape, descr) + data)
    return path


def npz_of_zeros(path, shape, descr="<f4"):
    """An honest .npz of zeros (a few MB on disk, ``prod(shape) * 4`` bytes once loaded)."""
    n = int(np.prod(shape)) * np.dtype(descr).itemsize
    zero = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("arr_0.npy", "w", force_zip64=True) as f:
            f.write(_header(shape, descr))
            while n > 0:
                k = min(n, len(zero))
                f.write(zero[:k])
                n -= k
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """The issue's case: zeros declaring 20000x20000 (1.6 GB once loaded)."""
    d = tmp_path_factory.mktemp("bomb")
    return npz_of_zeros(d / "bomb.npz", (20000, 20000))


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def test_npz_bomb_refused_from_header_in_folder(tmp_path, zip_bomb):
    d = tmp_path / "calib"
    d.mkdir()
    (d / "bomb.npz").write_bytes(zip_bomb.read_bytes())
    it = iter_folder(d, parse("tf"), model_shape=SHAPE)
    err: list[Exception] = []

    def consume():
        try:
            next(it)
        except InputError as e:
            err.append(e)

    assert _peak_mb(consume) < 64  # the data (1.6 GB) is never read
    assert err and "bomb.npz[arr_0]" in str(err[0]) and "[20000, 20000]" in str(err[0]) and "[1, 2, 6, 6]" in str(err[0])


def test_npz_bomb_refused_from_header_in_cli(tmp_path, zip_bomb, capsys):
    model = M.save(M.conv(), tmp_path / "m.onnx")
    rc = []
    peak = _peak_mb(lambda: rc.append(main(["infer", str(model), "-i", f"x={zip_bomb}"])))
    assert rc == [2] and peak < 64
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "input 'x' in" in err and "bomb.npz[arr_0] has shape (20000, 20000)" in err


def test_npy_claiming_37_gb(tmp_path, capsys):
    p = npy_claiming(tmp_path / "big.npy", (96000, 96000))  # 128 bytes on disk, 36.9 GB declared
    assert p.stat().st_size == 128
    with pytest.raises(InputError, match=r"big\.npy declares shape \(96000, 96000\) of float32 \(36,864,000,000 bytes\) "
                                         r"but holds only 0 bytes"):
        read_arrays(p)
    d = tmp_path / "calib"
    d.mkdir()
    p.rename(d / "big.npy")
    with pytest.raises(InputError, match=r"big\.npy declares shape"):
        list(iter_folder(d, parse("tf"), model_shape=[1, 96000, 96000]))
    model = M.save(M.conv(), tmp_path / "m.onnx")
    assert main(["infer", str(model), "-i", f"x={d / 'big.npy'}"]) == 2
    err = capsys.readouterr().err
    assert "input 'x': " in err and "big.npy declares shape" in err and "internal error" not in err


def test_truncated_npy(tmp_path):
    p = npy_claiming(tmp_path / "cut.npy", SHAPE, data=bytes(100))
    with pytest.raises(InputError, match=r"cut\.npy declares shape .* \(288 bytes\) but holds only 100 bytes"):
        read_arrays(p)


def test_too_big_for_the_limit(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((64, 64), np.float32))
    with pytest.raises(InputError, match=r"a\.npy declares shape \(64, 64\) \(16,384 bytes\), more than the 1,000 bytes"):
        read_arrays(p, max_bytes=1000)


@pytest.mark.parametrize("make, match", [
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "holds Python objects"),
    (lambda p: np.save(p, np.zeros(3, np.complex64)), "dtype complex64 is not numeric"),
    (lambda p: np.save(p, np.array(["a", "b"])), "dtype <U1 is not numeric"),
    (lambda p: np.save(p, np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])), "is not numeric"),
    (lambda p: p.write_bytes(b"\x80\x04K\x01."), "is not a numpy .npy/.npz file"),
    (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage"), "is not a valid .npy array"),
])
def test_bad_npy_files(tmp_path, make, match):
    p = tmp_path / "bad.npy"
    make(p)
    with pytest.raises(InputError, match=match) as e:
        read_arrays(p)
    assert str(p) in str(e.value)


def test_bad_npz_members(tmp_path):
    p = tmp_path / "odd.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match=r"odd\.npz\[notes\.txt\] is not a \.npy array"):
        read_arrays(p)
    p = tmp_path / "cut.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("arr_0.npy", _header((1000, 1000)) + bytes(10))
    with pytest.raises(InputError, match=r"cut\.npz\[arr_0\] declares shape \(1000, 1000\).*holds only 10 bytes"):
        read_arrays(p)
    p = tmp_path / "two.npz"
    np.savez(p, a=np.zeros(SHAPE, np.float32), b=np.zeros(SHAPE, np.float32))
    with pytest.raises(InputError, match=r"two\.npz holds 2 arrays \['a', 'b'\]; give a \.npz with 1 array"):
        read_arrays(p, max_arrays=1)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match=r"junk\.npz is not a readable \.npy/\.npz file"):
        read_arrays(tmp_path / "junk.npz")


def test_valid_files_still_load(tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    a = np.arange(72, dtype=np.float32).reshape(2, 6, 6)
    np.save(d / "0.npy", a)  # without the batch axis of 1
    np.savez(d / "1.npz", p=a[None], q=a[None] + 1)
    got = list(iter_folder(d, parse("tf"), model_shape=SHAPE))
    assert [g.shape for g in got] == [tuple(SHAPE)] * 3
    np.testing.assert_array_equal(got[2], a[None] + 1)
    fort = tmp_path / "f.npy"
    np.save(fort, np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)))
    np.testing.assert_array_equal(read_arrays(fort)[0][1], np.arange(6).reshape(2, 3))


def test_cli_shape_checked_before_loading(tmp_path, capsys):
    model = M.save(M.conv(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 6, 6), np.float32))
    assert main(["infer", str(model), "-i", f"x={tmp_path / 'x.npy'}"]) == 2
    err = capsys.readouterr().err
    assert f"input 'x' in {tmp_path / 'x.npy'} has shape (1, 3, 6, 6), but the model expects (1, 2, 6, 6)" in err
    np.save(tmp_path / "xs.npy", np.zeros((3, 1, 2, 6, 6), np.float32))
    assert main(["infer", str(model), "-i", f"x={tmp_path / 'xs.npy'}", "--batch"]) == 0
    assert capsys.readouterr().out.startswith("y: shape (3, 3, 6, 6)")


def test_empty_batch(tmp_path, capsys):
    model = M.save(M.conv(), tmp_path / "m.onnx")
    empty = np.zeros((0, 1, 2, 6, 6), np.float32)
    with pytest.raises(InputError, match="input 'x' is an empty batch"):
        npuflow.load(str(model)).run_batch({"x": empty})
    with pytest.raises(InputError, match="input 'x' is an empty batch"):
        ktc.kneron_inference([empty], input_names=["x"], onnx_file=str(model), batch=True)
    np.save(tmp_path / "e.npy", empty)
    assert main(["infer", str(model), "-i", f"x={tmp_path / 'e.npy'}", "--batch"]) == 2
    assert "input 'x' is an empty batch" in capsys.readouterr().err
