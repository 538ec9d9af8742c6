"""Command line: ``npuflow optimize | evaluate | infer``. Thin: parse, call the API, print.

Exit codes: 0 success, 2 bad input or usage (one-line message, no traceback), 3 internal error
(one line; set NPUFLOW_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from npuflow.errors import NpuflowError

PLATFORM_HELP = "target platform: 520, 720, 530, 630 or 730"


def _shape_arg(text: str) -> tuple[str, list[int]]:
    try:
        name, dims = text.rsplit("=", 1)
        shape = [int(d) for d in dims.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,... (e.g. x=1,3,32,320), got {text!r}") from None
    if not name or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,... with positive dims, got {text!r}")
    return name, shape


def _input_arg(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (a .npy or .npz file), got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def _shapes(items: list[tuple[str, list[int]]] | None) -> dict[str, list[int]] | None:
    return dict(items) if items else None


def _bitwidth_args(p: argparse.ArgumentParser, mixed: bool = False) -> None:
    for key, help_ in (("datapath", "activations inside the model"), ("weight", "weights (int4 on 730 only)"),
                       ("model-in", "model inputs"), ("model-out", "model outputs"), ("cpu-node", "CPU node inputs/outputs")):
        mix = (", or a mixed mode: 'mix light', 'mix balance', 'mixbw' (docs/fixed-point.md section 10.3)"
               if mixed and key in ("datapath", "weight") else "")
        cpu = key == "cpu-node"
        p.add_argument(f"--{key}-bitwidth", f"--{key}-bitwidth-mode", dest=f"{key.replace('-', '_')}_bitwidth",
                       default=None if cpu else "int8", metavar="MODE",
                       help=f"bit width of {help_}: int8 or int16 (int16 not on 520){mix}. "
                            + ("Default: as the datapath (int16 under --datapath-bitwidth int16; ktc: int8)" if cpu
                               else "Default int8"))


def build_parser() -> argparse.ArgumentParser:
    from npuflow._version import __version__

    parser = argparse.ArgumentParser(prog="npuflow", description="Open toolchain for Kneron-class edge NPUs.")
    parser.add_argument("--version", action="version", version=f"npuflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("optimize", help="optimize an ONNX model (shape inference, folding, BN fusion)",
                       description="Optimize a float ONNX model: shape inference, Constant folding, removal of "
                                   "Identity/Dropout, initializers listed as inputs treated as weights, BatchNormalization "
                                   "folded into the preceding Conv, dynamic input dims fixed.")
    p.add_argument("model", help="input .onnx file")
    p.add_argument("-o", "--output", help="output .onnx file (default: MODEL with .opt.onnx next to it)")
    p.add_argument("--keep-bn", action="store_true", help="do not fold BatchNormalization into Conv")
    p.add_argument("-p", "--platform", default=None,
                   help="rewrite for this platform's NPU operator table (" + PLATFORM_HELP.split(": ")[-1]
                        + "); without it the NPU-friendly rewrites choose a form the 720/530/630/730 all run")
    p.add_argument("--input-shape", action="append", type=_shape_arg, metavar="NAME=D0,D1,...",
                   help="fix the dims of a dynamic input (repeat per input), e.g. x=1,3,32,320")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")

    p = sub.add_parser("evaluate", help="IP evaluator: NPU/CPU placement and estimated speed",
                       description="Optimize the model and estimate, per node, its placement (NPU or CPU, and why), "
                                   "MACs, bytes and time on the platform. Prints the summary and writes "
                                   "model_fx_report.html/.json/.csv into the output folder.")
    p.add_argument("model", help=".onnx file")
    p.add_argument("-p", "--platform", required=True, help=PLATFORM_HELP)
    p.add_argument("-o", "--output-dir", default=None, help="folder for the report (default ./npuflow_output)")
    p.add_argument("--input-shape", action="append", type=_shape_arg, metavar="NAME=D0,D1,...",
                   help="fix the dims of a dynamic input (repeat per input)")
    p.add_argument("--keep-bn", action="store_true", help="do not fold BatchNormalization into Conv before evaluating")
    _bitwidth_args(p)
    p.add_argument("--weight-bandwidth", type=float, default=None, help="weight DDR bandwidth in GB/s (default: the platform's)")
    p.add_argument("--dma-bandwidth", type=float, default=None, help="activation DMA bandwidth in GB/s (default: the platform's)")

    p = sub.add_parser("analysis", help="fixed-point analysis (quantization): write the BIE",
                       description="Calibrate the model on folders of inputs (images through --preprocess, or .npy/.npz "
                                   "arrays), choose every tensor's fixed-point format and write "
                                   "<model>.kdp<platform>.scaled.bie into the output folder.")
    p.add_argument("model", help=".onnx file")
    p.add_argument("-p", "--platform", required=True, help=PLATFORM_HELP)
    p.add_argument("-i", "--input", action="append", type=_input_arg, required=True, metavar="NAME=FOLDER",
                   help="calibration folder of a model input (repeat per input): images (.jpg/.png/.bmp) or .npy/.npz files")
    p.add_argument("--preprocess", default=None, metavar="SPEC",
                   help="image preprocessing: a preset (imagenet, efficientnet, yolox, mnist, kneron, tf) or "
                        "key=value list, e.g. resize=256,crop=224,order=RGB,mean=127,std=128 (docs/preprocessing.md). "
                        "Recorded in the BIE")
    p.add_argument("-o", "--output-dir", default=None, help="output folder (default ./npuflow_output)")
    p.add_argument("--threads", type=int, default=4, help="calibration threads (default 4)")
    p.add_argument("--input-shape", action="append", type=_shape_arg, metavar="NAME=D0,D1,...",
                   help="fix the dims of a dynamic input (repeat per input)")
    _bitwidth_args(p, mixed=True)
    p.add_argument("--flops-ratio", type=float, default=None,
                   help="mixbw: the extra estimated time allowed, t <= (1 + flops_ratio) * t_int8 (default 0.2)")
    p.add_argument("--range-method", choices=["auto", "percentage", "mmse"], default="auto",
                   help="how activation ranges are chosen: auto (default: per tensor, the per-input quantile the model "
                        "outputs measure best on the calibration inputs), percentage (ktc's default), mmse")
    p.add_argument("--percentage", type=float, default=0.999, help="with --range-method percentage: per-input quantile of |x| kept for 8-bit tensors; with auto: the starting candidate (default 0.999)")
    p.add_argument("--percentage-16b", type=float, default=0.999999, help="the same for 16-bit tensors (default 0.999999)")
    p.add_argument("--percentile", type=float, default=0.001, help="mmse search range (default 0.001)")
    p.add_argument("--outlier-factor", type=float, default=1.0, help="mmse range multiplier (default 1.0)")
    p.add_argument("--optimize", type=int, choices=range(5), default=0, metavar="{0,1,2,3,4}",
                   help="1-4: also run the sequential bias adjustment on 32 calibration inputs (slower; better on "
                        "efficientnet_lite0, worse on the detectors measured: docs/compatibility.md; "
                        "docs/fixed-point.md section 3.5); default 0, as ktc")
    p.add_argument("--weight-rounding", choices=["compensated", "nearest"], default="compensated",
                   help="compensated (default): spatial convolutions' weights rounded with their errors compensated "
                        "on the calibration inputs (docs/fixed-point.md section 3.6); nearest: each weight on its own")
    p.add_argument("--quantize-mode", choices=["default", "post_sigmoid"], default="default",
                   help="post_sigmoid: the model's outputs are logits whose Sigmoid was removed")
    p.add_argument("--override", action="append", default=None, metavar="NODE=BITS",
                   help="put one node's output in another bit width, e.g. conv1=16 (repeat per node)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write model_fx_report.html/.json/.csv (per-layer precision, measured suggestions) after the "
                        "BIE (default: yes; --no-report skips it)")
    p.add_argument("--auto-precision", action=argparse.BooleanOptionalAction, default=True,
                   help="automatic precision choices measured on the calibration inputs: a float tail after the last "
                        "MAC layer (e.g. a box decode) that raises an output's SNR runs in float as host "
                        "post-processing (docs/fixed-point.md section 10.1; default: yes; --no-auto-precision keeps "
                        "every tail quantized)")
    p.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=True,
                   help="rescale the channels a depthwise convolution reads so that they share the tensor's range, "
                        "weights compensating (the float model computes the same; docs/fixed-point.md section 3.8; "
                        "default: yes; --no-equalize keeps the model's own channel scaling)")

    p = sub.add_parser("infer", help="run a float ONNX model or a quantized BIE on inputs",
                       description="Run a float ONNX model (onnxruntime) or an npuflow BIE (bit-exact integer simulator) on "
                                   "inputs given as .npy files (one array in the model's input shape, or N stacked on a "
                                   "first axis with --batch) or, for a BIE that records a preprocessing spec, images; "
                                   "print the outputs.")
    p.add_argument("model", help=".onnx or .bie file")
    p.add_argument("-p", "--platform", default=None, help="platform of the BIE (checked against the file)")
    p.add_argument("--data-type", choices=["float", "fixed"], default="float",
                   help="BIE only: 'fixed' prints the integer outputs, 'float' dequantizes them (default)")
    p.add_argument("-i", "--input", action="append", type=_input_arg, required=True, metavar="NAME=FILE",
                   help="model input name and .npy file (or an image, for a BIE with a preprocessing spec); repeat per input")
    p.add_argument("--batch", action="store_true", help="the arrays carry N inputs on their first axis")
    p.add_argument("--save", metavar="OUT.npz", help="save the outputs to this .npz file")
    p.add_argument("--force", action="store_true", help="replace --save's file if it exists")

    p = sub.add_parser("compare", help="run float and fixed side by side on one input; compare or dump every tensor",
                       description="Run the BIE's float model (onnxruntime) and its bit-exact fixed-point program on the "
                                   "same input and compare every quantized tensor: format, ranges, SNR, cosine, largest "
                                   "error in LSB. --layer prints one tensor in detail; --dump writes every tensor "
                                   "(float, integer and dequantized) to .npz files with a layers.csv index.")
    p.add_argument("model", help=".bie file written by analysis")
    p.add_argument("-p", "--platform", default=None, help="platform of the BIE (checked against the file)")
    p.add_argument("-i", "--input", action="append", type=_input_arg, required=True, metavar="NAME=FILE",
                   help="model input name and .npy file (or an image, for a BIE with a preprocessing spec); repeat per input")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="print the details of one tensor or ONNX node (repeat)")
    p.add_argument("--dump", metavar="DIR", help="write float.npz, fixed.npz, dequantized.npz and layers.csv into DIR")
    p.add_argument("--csv", metavar="FILE", help="write the comparison table to this CSV file")
    p.add_argument("--force", action="store_true", help="replace --csv's file if it exists")

    p = sub.add_parser("check", help="validate an npuflow BIE (structure, spec bounds, consistency) without running it",
                       description="Read an npuflow BIE and run the validator every load runs (docs/bie-format.md, "
                                   "'What the validator guarantees'): exit 0 and a one-line summary when the file is "
                                   "valid, exit 2 and the error (file, step, field) when it is not.")
    p.add_argument("model", help="the BIE file to check (any extension: a BIE is recognized by its content)")

    p = sub.add_parser("cut", help="cut a model at tensors into a head and a tail (e.g. post-processing)",
                       description="Cut an ONNX model at the given tensors into a head (the model inputs to those "
                                   "tensors, its outputs in the given order) and a tail (those tensors to the model "
                                   "outputs), so that running the tail on the head's outputs gives the model's "
                                   "outputs; e.g. to run a decode tail as post-processing. Tensor names are node "
                                   "outputs (the report's node table lists the nodes).")
    p.add_argument("model", help=".onnx file (cut as given; pass the .opt.onnx of evaluate --debug to cut the optimized graph)")
    p.add_argument("--at", required=True, metavar="TENSOR[,TENSOR...]",
                   help="the tensors to cut at (comma list); every path from an input to an output must cross one")
    p.add_argument("-o", "--output", required=True, metavar="HEAD.onnx", help="the head model to write")
    p.add_argument("--tail", required=True, metavar="TAIL.onnx", help="the tail model to write")
    p.add_argument("--force", action="store_true", help="replace the output files if they exist")
    return parser


def _load_npy(path: str, name: str, spec=None, *, batched: bool = False) -> np.ndarray:
    """One array from a .npy (or a one-array .npz), its header checked (dtype, declared size and, when
    the model input ``spec`` is known, shape) before any data is read (``npuflow._io.read_arrays``)."""
    from npuflow._io import read_arrays
    from npuflow.errors import InputError
    from npuflow.inputs import shape_error

    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file for '{name}' not found: {p}")
    what = f"input '{name}'"

    def check(where: str, shape: tuple[int, ...]) -> None:
        err = shape_error(spec, shape, where=f"in {where.removeprefix(what + ': ')}", batched=batched)
        if err is not None:
            raise err

    return read_arrays(p, what=what, check_shape=check if spec is not None else None, max_arrays=1)[0][1]


def _cmd_optimize(a: argparse.Namespace) -> int:
    import onnx

    from npuflow._io import atomic_write_bytes, refuse_overwrite
    from npuflow.ir.load import load_model
    from npuflow.passes import optimize

    src = Path(a.model)
    out = Path(a.output) if a.output else src.with_name(src.name[:-5] + ".opt.onnx" if src.name.endswith(".onnx") else src.name + ".opt.onnx")
    refuse_overwrite(out, a.force)
    platform = None
    if a.platform is not None:
        from npuflow.platforms import get_platform

        platform = get_platform(a.platform)
    model = optimize(load_model(src), keep_bn=a.keep_bn, input_shapes=_shapes(a.input_shape), progress=sys.stderr.isatty(),
                     platform=platform)
    atomic_write_bytes(out, model.SerializeToString())
    ops: dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"wrote {out} ({len(model.graph.node)} nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) + ")")
    del onnx
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from npuflow.config import ModelConfig

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="model id .* reserved")
        from npuflow.ir.load import is_bie_file

        source = {"bie_path": a.model} if is_bie_file(a.model) else {"onnx_path": a.model}  # a BIE: by content
        km = ModelConfig(32769, "0001", a.platform, input_shapes=_shapes(a.input_shape), **source)
    text = km.evaluate(
        output_dir=a.output_dir, datapath_bitwidth_mode=a.datapath_bitwidth, weight_bitwidth_mode=a.weight_bitwidth,
        model_in_bitwidth_mode=a.model_in_bitwidth, model_out_bitwidth_mode=a.model_out_bitwidth,
        cpu_node_bitwidth_mode=a.cpu_node_bitwidth, weight_bandwidth=a.weight_bandwidth, dma_bandwidth=a.dma_bandwidth,
        keep_bn=a.keep_bn,
    )
    print(text, end="")
    return 0


def _cmd_analysis(a: argparse.Namespace) -> int:
    from npuflow.config import ModelConfig
    from npuflow.errors import InputError
    from npuflow.preprocess import PRESETS, iter_folder, parse
    from npuflow.reference.float_runner import input_specs

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="model id .* reserved")
        km = ModelConfig(32769, "0001", a.platform, onnx_path=a.model, input_shapes=_shapes(a.input_shape))
    specs = input_specs(km.optimized_model())
    folders = dict(a.input)
    for s in specs:
        if s.name not in folders:
            raise InputError(f"Cannot find the corresponding input image folder of model input {s.name}: "
                             f"add --input {s.name}=FOLDER")
    unknown = [n for n in folders if n not in {s.name for s in specs}]
    if unknown:
        raise InputError(f"--input names {unknown} are not model inputs; the model's inputs are {[s.name for s in specs]}")
    spec = None
    if a.preprocess:
        spec = PRESETS[a.preprocess] if a.preprocess in PRESETS else parse(a.preprocess)
    mapping = {}
    for s in specs:
        folder = Path(folders[s.name])
        if not folder.is_dir():
            raise InputError(f"calibration folder of model input {s.name} not found: {folder}")
        mapping[s.name] = iter_folder(folder, spec, model_shape=s.shape) if spec else iter_folder(folder, _NO_SPEC, model_shape=s.shape)
    overrides = {}
    for item in a.override or []:
        node, _, bits = item.rpartition("=")
        if not node or not bits.isdigit():
            raise InputError(f"--override expects NODE=BITS (e.g. conv1=16), got {item!r}")
        overrides[node] = {"bits": int(bits)}
    bie = km.analysis(
        mapping, output_dir=a.output_dir, threads=a.threads, quantize_mode=a.quantize_mode,
        datapath_range_method=a.range_method, percentage=a.percentage, percentage_16b=a.percentage_16b,
        percentile=a.percentile, outlier_factor=a.outlier_factor, datapath_bitwidth_mode=a.datapath_bitwidth,
        weight_bitwidth_mode=a.weight_bitwidth, model_in_bitwidth_mode=a.model_in_bitwidth,
        model_out_bitwidth_mode=a.model_out_bitwidth, cpu_node_bitwidth_mode=a.cpu_node_bitwidth,
        node_overrides=overrides or None, preprocess=spec.to_dict() if spec else None, report=a.report,
        optimize=a.optimize, weight_rounding=a.weight_rounding, auto_precision=a.auto_precision, equalize=a.equalize,
        flops_ratio=a.flops_ratio,
    )
    print(f"wrote {bie}")
    if a.report and km.report_paths:
        q = km.report.get("quantization") or {}
        snr = q.get("model_output_snr_db")
        print(f"wrote {km.report_paths['html']} (model-output SNR "
              f"{'exact' if snr is None else f'{snr:.2f} dB'} on {q.get('report_inputs', {}).get('count', 0)} inputs)")
    return 0


class _NoSpec:
    """Stand-in spec for folders of .npy/.npz arrays: any image in them is an error."""

    def output_shape(self):
        from npuflow.errors import InputError

        raise InputError("the calibration folder holds images: pass --preprocess SPEC to say how to turn them into arrays")

    def to_text(self) -> str:
        return "<none>"


_NO_SPEC = _NoSpec()


def _load_input(path: str, name: str, model, *, batched: bool = False) -> np.ndarray:
    from npuflow.errors import InputError

    suffix = Path(path).suffix.lower()
    if suffix in (".npy", ".npz"):
        spec = next((s for s in getattr(model, "inputs", []) if s.name == name), None)
        return _load_npy(path, name, spec, batched=batched)
    spec_dict = getattr(getattr(model, "bie", None), "preprocess", None)
    if spec_dict is None:
        why = ("this BIE records no preprocessing spec (run analysis with --preprocess)" if model.kind == "fixed"
               else "images need a BIE that records a preprocessing spec")
        raise InputError(f"{path}: only .npy/.npz inputs are accepted here; {why}")
    from npuflow.preprocess import PreprocessSpec, load_image

    return load_image(path, PreprocessSpec.from_dict(spec_dict))


def _cmd_infer(a: argparse.Namespace) -> int:
    from npuflow._io import atomic_write_bytes, refuse_overwrite
    from npuflow.model import load

    save = Path(a.save) if a.save else None
    if save:
        refuse_overwrite(save, a.force)
    if a.platform is not None:  # refused when invalid, even for a float model (which runs the same on every platform)
        from npuflow.platforms import get_platform

        get_platform(a.platform)
    model = load(a.model, platform=a.platform)
    if a.data_type == "fixed" and getattr(model, "kind", "") != "fixed":
        from npuflow.errors import InvalidConfigError

        raise InvalidConfigError(f"--data-type fixed needs a quantized model (a .bie from analysis); {a.model} is a float "
                                 "ONNX model, which runs in float: drop --data-type fixed or pass the BIE")
    feeds = {name: _load_input(path, name, model, batched=a.batch) for name, path in a.input}
    kw = {"data_type": a.data_type} if getattr(model, "kind", "") == "fixed" else {}
    outs = model.run_batch(feeds, **kw) if a.batch else model.run(feeds, **kw)
    for name, y in zip(model.output_names, outs):
        flat = y.reshape(-1)
        line = f"{name}: shape {tuple(y.shape)} {y.dtype} min {flat.min():.6g} max {flat.max():.6g} mean {flat.mean():.6g}"
        if y.ndim >= 1 and y.shape[-1] <= 1000 and y.size == y.shape[-1] * (y.shape[0] if a.batch else 1):
            line += f" argmax {y.reshape(-1, y.shape[-1]).argmax(-1).tolist()}"
        print(line)
    if save:
        buf = io.BytesIO()
        np.savez(buf, **{f"output_{k}": y for k, y in enumerate(outs)})
        atomic_write_bytes(save, buf.getvalue())
        print(f"wrote {save}")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from npuflow._io import atomic_write_text, refuse_overwrite
    from npuflow.debug import compare_layers
    from npuflow.errors import InputError
    from npuflow.model import load

    if not a.model.endswith(".bie"):
        raise InputError(f"compare needs a .bie file written by analysis, got {a.model}")
    csv_path = Path(a.csv) if a.csv else None
    if csv_path:
        refuse_overwrite(csv_path, a.force)
    model = load(a.model, platform=a.platform)
    feeds = {name: _load_input(path, name, model) for name, path in a.input}
    cmp = compare_layers(model, feeds)
    print(cmp.table(), end="")
    worst = cmp.worst(3)
    if worst:
        print("lowest SNR: " + ", ".join(f"{r.tensor} ({r.op_type}) {r.snr_db:.2f} dB" for r in worst))
    for name in a.layer or []:
        print()
        print(cmp.layer(name).summary())
    if csv_path:
        atomic_write_text(csv_path, cmp.to_csv())
        print(f"wrote {csv_path}")
    if a.dump:
        paths = cmp.dump(a.dump)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    from npuflow.bie import check_bie

    print(check_bie(a.model))
    return 0


def _cmd_cut(a: argparse.Namespace) -> int:
    from npuflow._io import refuse_overwrite
    from npuflow.errors import InputError
    from npuflow.ir.load import load_model
    from npuflow.passes.edit import cut_model

    src, head_path, tail_path = Path(a.model), Path(a.output), Path(a.tail)
    tensors = [t.strip() for t in a.at.split(",") if t.strip()]
    if not tensors:
        raise InputError(f"--at names no tensor ({a.at!r}); give TENSOR[,TENSOR...]")
    if head_path.resolve() == tail_path.resolve():
        raise InputError(f"-o and --tail are the same file ({head_path}); give two paths")
    for out in (head_path, tail_path):
        if src.exists() and out.resolve() == src.resolve():
            raise InputError(f"{out} is the model being cut; write the head and the tail elsewhere")
        refuse_overwrite(out, a.force)
    head, tail = cut_model(load_model(src), tensors)
    _write_pair([(head_path, head.SerializeToString()), (tail_path, tail.SerializeToString())], force=a.force)

    def desc(m) -> str:
        weights = {t.name for t in m.graph.initializer}
        ins = ", ".join(i.name for i in m.graph.input if i.name not in weights)
        return f"{len(m.graph.node)} nodes; inputs {ins}; outputs {', '.join(o.name for o in m.graph.output)}"

    print(f"wrote {head_path} (head: {desc(head)})")
    print(f"wrote {tail_path} (tail: {desc(tail)})")
    return 0


def _write_pair(files: list[tuple[Path, bytes]], *, force: bool) -> None:
    """Write ``npuflow cut``'s head and tail together: both files or neither, never replacing an
    existing file unless ``force`` (checked again under the lock).

    In one folder (the usual case) they are one output set (``npuflow._outputs.OutputSet``, like
    analysis()'s outputs): staged, committed by one rename with ``npuflow_manifest.json``, under
    an OS lock on the folder. Two different folders cannot be committed by one rename (a set is
    one folder), so there: both folders are locked (the same flock), each file is written into a
    private folder beside its target (with a second name for the file it replaces), then both are
    renamed into place with Ctrl-C held back; if the second rename fails, the first is undone (the
    previous file restored, or the new one removed). Only a kill -9 or a power loss between the
    two renames can leave one new file."""
    import contextlib
    import shutil
    import tempfile

    from npuflow._io import atomic_write_bytes, refuse_overwrite
    from npuflow._outputs import COMMIT_DIR, MANIFEST, STAGING_PREFIX, OutputSet, _lock, _signals_held
    from npuflow.errors import OutputError

    for path, _ in files:
        if path.name == MANIFEST or path.name.startswith((STAGING_PREFIX, COMMIT_DIR)):
            raise OutputError(f"{path}: {path.name} is a name npuflow's output sets use; choose another file name")
    folders = {path.parent.resolve() for path, _ in files}
    if len(folders) == 1:
        with OutputSet(folders.pop(), run="cut") as staged:
            for path, data in files:
                refuse_overwrite(path, force)
                atomic_write_bytes(staged.staging / path.name, data)
            staged.commit()
        return
    with contextlib.ExitStack() as stack:
        for folder in sorted(folders):  # one order for every process: no deadlock between two cuts
            stack.enter_context(_lock(folder))
        work: list[Path] = []  # per file, a private folder beside its target: "new" and (force) "old"
        try:
            for path, data in files:
                refuse_overwrite(path, force)
                d = Path(tempfile.mkdtemp(prefix=".npuflow-cut-", dir=path.parent))
                work.append(d)
                atomic_write_bytes(d / "new", data)
                if path.exists():  # a second name for the previous file, until both renames are done
                    try:
                        os.link(path, d / "old")
                    except OSError:  # a file system without hard links
                        shutil.copy2(path, d / "old")
            done: list[Path] = []
            with _signals_held():
                try:
                    for (path, _), d in zip(files, work):
                        os.replace(d / "new", path)
                        done.append(path)
                except OSError as exc:
                    for path, d in zip(done, work):  # undo: the previous file back, or no file
                        if (d / "old").exists():
                            os.replace(d / "old", path)
                        else:
                            path.unlink(missing_ok=True)
                    raise OutputError(f"cannot write {files[len(done)][0]}: {exc.strerror or exc}; nothing was "
                                      "written (the head and the tail are written together or not at all)") from exc
        except OutputError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write the head and the tail: {exc.strerror or exc}; nothing was written") from exc
        finally:
            for d in work:
                shutil.rmtree(d, ignore_errors=True)

_COMMANDS = {"optimize": _cmd_optimize, "evaluate": _cmd_evaluate, "analysis": _cmd_analysis, "infer": _cmd_infer,
             "compare": _cmd_compare, "check": _cmd_check, "cut": _cmd_cut}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="npuflow: %(levelname)s: %(message)s")
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *rest, **kw: f"npuflow: warning: {msg}\n"
    try:
        return _COMMANDS[a.command](a)
    except NpuflowError as exc:
        print(f"npuflow {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npuflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback, unless asked
        if os.environ.get("NPUFLOW_DEBUG") == "1":
            raise
        print(f"npuflow {a.command}: internal error: {type(exc).__name__}: {exc} (set NPUFLOW_DEBUG=1 for the traceback "
              "and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
