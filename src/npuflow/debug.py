"""Layer dumps and float-vs-fixed comparison of every intermediate tensor (the original's
``export_dynasty_dump``), to debug one layer.

    from npuflow.debug import compare_layers
    cmp = compare_layers("model.kdp720.scaled.bie", {"input": x})   # or a ModelConfig after analysis()
    print(cmp.table())                      # one line per tensor: format, ranges, SNR, cosine, max error
    rec = cmp.layer("conv_12")              # by tensor name or ONNX node name
    rec.float, rec.fixed, rec.dequantized   # the arrays
    cmp.dump("dump_dir")                    # float.npz, fixed.npz, dequantized.npz, layers.csv (one set)

CLI: ``npuflow compare MODEL.bie -i NAME=x.npy [--dump DIR] [--layer NAME] [--csv FILE]``.

The float side is the optimized float model stored in the BIE (the graph the fixed-point program was
built from, so every quantized tensor has a float twin of the same name), run by onnxruntime; the
fixed side is the bit-exact integer program. Both run on the same input, given as float arrays
(the fixed side quantizes them to the model-input format, as a preprocessor would).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from npuflow.errors import InputError

__all__ = ["LayerRecord", "LayerComparison", "compare_layers"]


@dataclass
class LayerRecord:
    """One quantized tensor of the program, float and fixed side by side."""

    index: int  # position in the program (model inputs first, then step outputs in order)
    tensor: str
    step: str  # the step producing it ("" for a model input)
    op_type: str  # "Input" for a model input
    nodes: tuple[str, ...]  # ONNX nodes fused into the producing step
    bits: int
    radix: int | tuple[int, ...]
    scale: float | tuple[float, ...]
    float: np.ndarray  # float reference (onnxruntime)
    fixed: np.ndarray  # integers of the fixed-point run
    dequantized: np.ndarray  # fixed / (scale * 2^radix), float64
    snr_db: float | None  # None: no error at all
    cosine: float
    max_abs_err: float
    max_err_lsb: float  # largest |float - fixed| in units of the format's LSB
    saturated: int  # fixed values at qmin or qmax

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.fixed.shape)

    def summary(self) -> str:
        f, d = self.float.astype(np.float64), self.dequantized
        return "\n".join([
            f"tensor {self.tensor} ({'model input' if not self.step else f'output of {self.step} ({self.op_type})'})",
            f"  fused ONNX nodes: {', '.join(self.nodes) or '-'}",
            f"  shape {self.shape}, int{self.bits} radix {self.radix} scale {self.scale}",
            f"  float  min {f.min():.6g} max {f.max():.6g} mean {f.mean():.6g}",
            f"  fixed  min {d.min():.6g} max {d.max():.6g} mean {d.mean():.6g} (integers {self.fixed.min()}..{self.fixed.max()}, "
            f"{self.saturated} at the format's limits)",
            f"  SNR {'exact' if self.snr_db is None else f'{self.snr_db:.2f} dB'}, cosine {self.cosine:.6f}, "
            f"max |error| {self.max_abs_err:.6g} ({self.max_err_lsb:.3g} LSB)",
        ])


CSV_FIELDS = ["index", "tensor", "key", "step", "op_type", "nodes", "shape", "bits", "radix", "scale", "float_min",
              "float_max", "fixed_min", "fixed_max", "snr_db", "cosine", "max_abs_err", "max_err_lsb", "saturated"]


def _key(name: str, used: set[str]) -> str:
    """A file-name-safe, unique key for a tensor name (the mapping is in layers.csv)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "tensor"
    key, i = base, 1
    while key in used:
        i += 1
        key = f"{base}__{i}"
    used.add(key)
    return key


@dataclass
class LayerComparison:
    records: list[LayerRecord]
    output_names: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def layer(self, name: str) -> LayerRecord:
        """The record of a tensor, or of the output of the step that an ONNX node name belongs to."""
        for r in self.records:
            if r.tensor == name:
                return r
        for r in self.records:
            if name == r.step or name in r.nodes:
                return r
        raise InputError(f"no quantized tensor or node named {name!r}; the compared tensors are listed by "
                         f"table() (first ones: {[r.tensor for r in self.records[:5]]})")

    def worst(self, n: int = 5) -> list[LayerRecord]:
        fin = [r for r in self.records if r.snr_db is not None]
        return sorted(fin, key=lambda r: r.snr_db)[:n]

    def rows(self) -> list[dict[str, Any]]:
        used: set[str] = set()
        out = []
        for r in self.records:
            f = r.float.astype(np.float64)
            out.append({
                "index": r.index, "tensor": r.tensor, "key": _key(r.tensor, used), "step": r.step, "op_type": r.op_type,
                "nodes": " ".join(r.nodes), "shape": "x".join(map(str, r.shape)), "bits": r.bits,
                "radix": r.radix if isinstance(r.radix, int) else " ".join(map(str, r.radix)),
                "scale": f"{r.scale:.6g}" if isinstance(r.scale, float) else " ".join(f"{s:.6g}" for s in r.scale),
                "float_min": f"{f.min():.6g}", "float_max": f"{f.max():.6g}",
                "fixed_min": f"{r.dequantized.min():.6g}", "fixed_max": f"{r.dequantized.max():.6g}",
                "snr_db": "exact" if r.snr_db is None else f"{r.snr_db:.3f}", "cosine": f"{r.cosine:.6f}",
                "max_abs_err": f"{r.max_abs_err:.6g}", "max_err_lsb": f"{r.max_err_lsb:.4g}", "saturated": r.saturated,
            })
        return out

    def to_csv(self) -> str:
        """The comparison table as CSV (``layers.csv``, ``npuflow compare --csv``); text cells that a
        spreadsheet would run as a formula get a leading ``'`` (``npuflow._io.csv_cell``)."""
        from npuflow._io import csv_row

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in self.rows():
            w.writerow(csv_row(row))
        return buf.getvalue()

    def table(self) -> str:
        """A fixed-width text table, one line per tensor."""
        head = f"{'#':>4}  {'tensor':<36} {'op':<18} {'format':<18} {'float range':>21} {'SNR dB':>8} {'cosine':>9} {'max err LSB':>11}"
        lines = [head, "-" * len(head)]
        for r, row in zip(self.records, self.rows()):
            fmt = f"int{r.bits} r{row['radix'] if isinstance(r.radix, int) else '*'} s{row['scale'] if isinstance(r.scale, float) else '*'}"
            rng = f"{row['float_min']}..{row['float_max']}"
            lines.append(f"{r.index:>4}  {r.tensor[:36]:<36} {r.op_type[:18]:<18} {fmt[:18]:<18} {rng[:21]:>21} "
                         f"{row['snr_db']:>8} {row['cosine']:>9} {row['max_err_lsb']:>11}")
        return "\n".join(lines) + "\n"

    def dump(self, folder: str | Path, *, as_set: bool = True) -> dict[str, Path]:
        """Write ``float.npz`` (float32 reference), ``fixed.npz`` (integers), ``dequantized.npz`` and
        ``layers.csv`` (tensor name -> key in the .npz files, formats and metrics) into ``folder``.

        The four files are one output set (``npuflow._outputs``, like analysis()'s outputs): staged,
        committed together with ``npuflow_manifest.json`` listing them with sha256s, under an OS
        lock on ``folder``; after a failure or Ctrl-C, ``folder`` holds the previous dump or the new
        one, never a mix. ``as_set=False`` writes them straight into ``folder``, for a caller that
        commits the folder as part of its own set (analysis()'s ``layer_dump/``)."""
        if not as_set:
            return self._write(Path(folder))
        from npuflow._outputs import OutputSet

        with OutputSet(folder, run="layer dump") as staged:
            written = self._write(staged.staging)
            staged.commit()
        return {k: staged.final(v) for k, v in written.items()}

    def _write(self, out: Path) -> dict[str, Path]:
        from npuflow._io import atomic_write_bytes, atomic_write_text, ensure_output_dir

        out = ensure_output_dir(out)
        rows = self.rows()
        paths = {}
        for kind, attr in (("float", "float"), ("fixed", "fixed"), ("dequantized", "dequantized")):
            buf = io.BytesIO()
            np.savez(buf, **{row["key"]: getattr(r, attr) for r, row in zip(self.records, rows)})
            paths[kind] = atomic_write_bytes(out / f"{kind}.npz", buf.getvalue())
        paths["csv"] = atomic_write_text(out / "layers.csv", self.to_csv())
        return paths


def _resolve(model: Any, platform: Any) -> tuple[Any, Any]:
    """(program, optimized float model) from a BIE path, a FixedModel, a BIE contents object or a
    ModelConfig after analysis()."""
    from npuflow.model import FixedModel, open_bie

    if hasattr(model, "analysis_result") and getattr(model, "analysis_result", None) is not None:
        res = model.analysis_result
        return res.program, res.optimized
    if isinstance(model, (str, Path)) or hasattr(model, "bie_path"):
        path = model if isinstance(model, (str, Path)) else model.bie_path
        if not path:
            raise InputError("this ModelConfig has no BIE yet: run analysis() first, or pass a .bie path")
        model = open_bie(path, platform=platform)
    if isinstance(model, FixedModel):
        return model.program, model.bie.float_model
    if hasattr(model, "program") and hasattr(model, "float_model"):
        return model.program, model.float_model
    raise InputError(f"compare_layers needs a .bie path, a loaded BIE (npuflow.load) or a ModelConfig after analysis(); "
                     f"got {type(model).__name__}")


def compare_layers(
    model: Any,
    inputs: Mapping[str, Any] | Sequence[Any],
    input_names: Sequence[str] | None = None,
    *,
    platform: int | str | None = None,
) -> LayerComparison:
    """Run float and fixed side by side on one input and compare every quantized tensor.

    ``model``: a ``.bie`` path, ``npuflow.load(bie)``, or a ``ModelConfig`` after ``analysis()``.
    ``inputs``: ``{name: array}`` or a list in model-input order (as ``kneron_inference``).
    """
    from npuflow.calibration.collector import expose_tensors
    from npuflow.inputs import bind_inputs
    from npuflow.reference.float_runner import FloatRunner, input_specs
    from npuflow.report.precision import ErrAcc, _compared

    program, float_model = _resolve(model, platform)
    specs = input_specs(float_model)
    feeds = bind_inputs(specs, inputs, input_names)
    names = _compared(program)
    inner = [n for n in names if n not in program.input_names]
    runner = FloatRunner(expose_tensors(float_model, inner), label="float model")
    fl = dict(zip(inner, runner.run(feeds, inner))) if inner else {}
    fl.update(feeds)
    env = program.run(program.quantize_inputs(feeds), keep_all=True)
    producer: dict[str, Any] = {}
    for st in program.steps:
        for y in st.outputs:
            producer.setdefault(y, st)
    records = []
    for i, n in enumerate(names):
        fmt = program.formats[n]
        q = np.asarray(env[n])
        deq = fmt.dequantize(q)
        ref = np.asarray(fl[n])
        acc = ErrAcc()
        acc.add(ref, deq)
        r, sc = fmt.broadcast_radix_scale(q.ndim)
        lsb = 1.0 / (sc * np.exp2(r.astype(np.float64)))  # one LSB (per channel when per-channel)
        err = np.abs(ref.astype(np.float64) - deq)
        st = producer.get(n)
        records.append(LayerRecord(
            index=i, tensor=n, step=st.name if st else "", op_type=st.op_type if st else "Input",
            nodes=tuple(st.nodes) if st else (), bits=fmt.bits, radix=fmt.radix, scale=fmt.scale,
            float=ref, fixed=q, dequantized=deq, snr_db=acc.snr(), cosine=acc.cosine(),
            max_abs_err=float(err.max()) if err.size else 0.0,
            max_err_lsb=float((err / lsb).max()) if err.size else 0.0,
            saturated=int(((q == fmt.qmin) | (q == fmt.qmax)).sum()),
        ))
    return LayerComparison(records, list(program.output_names))
