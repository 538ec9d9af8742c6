"""Loaded-model objects: npuflow's primary inference API.

Build once (load, check, prepare the engine), then call many times on one input or a batch::

    m = npuflow.load("model.onnx")
    y = m.run({"input": x})              # one input, in the model's own shape
    ys = m.run_batch({"input": xs})      # N inputs stacked on a new (or the batch) axis

``ktc.kneron_inference`` is a thin wrapper that keeps a small cache of these objects.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from npuflow.errors import InputError
from npuflow.inputs import InputSpec, bind_inputs
from npuflow.ir.load import ModelSource, load_model
from npuflow.reference.float_runner import FloatRunner, input_specs


def select_outputs(output_names: list[str], reordering: Sequence[str] | None) -> list[str]:
    """Output names in model order, or in ``reordering`` order (each must be a model output)."""
    if reordering is None:
        return output_names
    if isinstance(reordering, str):
        reordering = [reordering]
    unknown = [r for r in reordering if r not in output_names]
    if unknown:
        raise InputError(f"reordering names {unknown} are not outputs of the model; its outputs are {output_names}")
    return list(reordering)


class FloatModel:
    """A float ONNX model run by onnxruntime, exactly as given (no optimization applied)."""

    kind = "float"

    def __init__(self, source: ModelSource, *, threads: int | None = None) -> None:
        self.path: Path | None = None if isinstance(source, onnx.ModelProto) else Path(source)
        label = str(self.path) if self.path else "<in-memory ModelProto>"
        self.proto = load_model(source)
        self.inputs: list[InputSpec] = input_specs(self.proto, allow_dynamic=True)
        self._runner = FloatRunner(self.proto, label=label, threads=threads)
        self.output_names: list[str] = list(self._runner.output_names)

    # -- helpers -----------------------------------------------------------------------------
    def _select_outputs(self, reordering: Sequence[str] | None) -> list[str]:
        return select_outputs(self.output_names, reordering)

    def _dynamic_batch(self) -> bool:
        return all(len(s.shape) > 0 and s.shape[0] == -1 for s in self.inputs)

    # -- public API --------------------------------------------------------------------------
    def run(
        self,
        inputs: Mapping[str, Any] | Sequence[Any],
        input_names: Sequence[str] | None = None,
        *,
        reordering: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """Run one input; returns the outputs in model order (or ``reordering`` order)."""
        feeds = bind_inputs(self.inputs, inputs, input_names)
        return self._runner.run(feeds, self._select_outputs(reordering))

    def run_batch(
        self,
        inputs: Mapping[str, Any] | Sequence[Any],
        input_names: Sequence[str] | None = None,
        *,
        reordering: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """Run N inputs at once. Each array carries N on its first axis.

        A model with a dynamic batch dim runs the whole batch in one call; any other model
        (e.g. one whose graph fixes batch 1) is run once per sample and the results are
        concatenated on axis 0.
        """
        feeds = bind_inputs(self.inputs, inputs, input_names, batched=True)
        names = self._select_outputs(reordering)
        n = next(iter(feeds.values())).shape[0]
        if self._dynamic_batch():
            return self._runner.run(feeds, names)
        per_sample = []
        for i in range(n):
            one = {}
            for s in self.inputs:
                v = feeds[s.name]
                one[s.name] = v[i : i + 1] if v.ndim == len(s.shape) else v[i]
            per_sample.append(self._runner.run(one, names))
        return [np.concatenate([r[k] for r in per_sample], axis=0) for k in range(len(names))]


class FixedModel:
    """A quantized model from an npuflow BIE, run by the bit-exact integer simulator.

    ``run(..., data_type="float")`` dequantizes the integer outputs; ``"fixed"`` returns them as
    integers. Float inputs are quantized to each model input's format (round half to even,
    saturation), as a hardware preprocessor would.
    """

    kind = "fixed"

    def __init__(self, contents: Any, *, platform: int | str | None = None) -> None:
        from npuflow.errors import InvalidConfigError
        from npuflow.platforms import get_platform

        self.bie = contents
        self.path = Path(contents.path) if getattr(contents, "path", None) else None
        self.platform = contents.platform
        if platform is not None and get_platform(platform).id != contents.platform:
            raise InvalidConfigError(
                f"{self.path or 'BIE'} was quantized for platform {contents.platform}, not {get_platform(platform).id}: "
                f"pass platform={contents.platform} or re-run analysis for {get_platform(platform).id}"
            )
        self.program = contents.program
        self.inputs: list[InputSpec] = input_specs(contents.float_model)
        self.output_names: list[str] = list(self.program.output_names)

    def _select_outputs(self, reordering: Sequence[str] | None) -> list[str]:
        return select_outputs(self.output_names, reordering)

    def _finish(self, env: dict[str, np.ndarray], names: list[str], data_type: str) -> list[np.ndarray]:
        from npuflow.errors import InvalidConfigError

        if data_type not in ("float", "fixed"):
            raise InvalidConfigError(f"data_type must be 'float' or 'fixed', got {data_type!r}")
        out = []
        for n in names:
            q = env[n]
            f = self.program.formats.get(n)
            out.append(q if (data_type == "fixed" or f is None) else f.dequantize(q).astype(np.float32))
        return out

    def run(self, inputs: Mapping[str, Any] | Sequence[Any], input_names: Sequence[str] | None = None, *,
            reordering: Sequence[str] | None = None, data_type: str = "float") -> list[np.ndarray]:
        """Run one input through the integer program."""
        feeds = bind_inputs(self.inputs, inputs, input_names)
        names = self._select_outputs(reordering)
        env = self.program.run(self.program.quantize_inputs(feeds))
        return self._finish(env, names, data_type)

    def run_batch(self, inputs: Mapping[str, Any] | Sequence[Any], input_names: Sequence[str] | None = None, *,
                  reordering: Sequence[str] | None = None, data_type: str = "float") -> list[np.ndarray]:
        """Run N inputs (first axis); results concatenated on axis 0.

        The whole batch goes through each step at once (steps whose graph fixes batch 1, such
        as a Reshape to ``[1, 85, -1]``, run per sample inside the program); the integers are
        those of N separate runs.
        """
        from npuflow.sim.fast.batching import BatchUnsupported

        feeds = bind_inputs(self.inputs, inputs, input_names, batched=True)
        names = self._select_outputs(reordering)
        n = next(iter(feeds.values())).shape[0]
        flat = {s.name: (feeds[s.name] if feeds[s.name].ndim == len(s.shape) else
                         feeds[s.name].reshape((-1,) + feeds[s.name].shape[2:]) if feeds[s.name].ndim > 1 else None)
                for s in self.inputs}
        if all(v is not None for v in flat.values()):
            # micro-batches: a few samples per step amortize the per-step cost while the tensors
            # stay cache-sized (npuflow.sim.fast.batching.micro_batch)
            from npuflow.sim.fast.batching import micro_batch

            mb = micro_batch()
            try:
                parts = []
                for i in range(0, n, mb):
                    k = min(mb, n - i)
                    rows = {s.name: v.shape[0] // n for s, v in zip(self.inputs, flat.values())}
                    chunk = {name: v[i * rows[name]:(i + k) * rows[name]] for name, v in flat.items()}  # type: ignore[index]
                    env = self.program.run(self.program.quantize_inputs(chunk), batch=k if k > 1 else None)
                    parts.append(self._finish(env, names, data_type))
                return [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(names))]
            except BatchUnsupported:
                pass
        per = []
        for i in range(n):
            one = {s.name: (feeds[s.name][i:i + 1] if feeds[s.name].ndim == len(s.shape) else feeds[s.name][i])
                   for s in self.inputs}
            env = self.program.run(self.program.quantize_inputs(one))
            per.append(self._finish(env, names, data_type))
        return [np.concatenate([r[k] for r in per], axis=0) for k in range(len(names))]

    def run_all(self, inputs: Mapping[str, Any] | Sequence[Any], input_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Every tensor of the integer program (integers), for layer dumps."""
        feeds = bind_inputs(self.inputs, inputs, input_names)
        return self.program.run(self.program.quantize_inputs(feeds), keep_all=True)


def open_bie(path: str | os.PathLike, *, platform: int | str | None = None) -> FixedModel:
    """Open an npuflow BIE (read and checked by ``npuflow.bie``) as a loaded fixed-point model."""
    from npuflow.bie import read_bie

    return FixedModel(read_bie(path), platform=platform)


def load(source: ModelSource, *, threads: int | None = None, platform: int | str | None = None) -> "FloatModel | FixedModel":
    """Load a model for inference. ``.onnx`` (or a ModelProto) -> FloatModel.

    An npuflow BIE, recognized by its content whatever its extension (and any ``.bie`` file, so that
    an encrypted Kneron BIE gets its own message), is read by ``npuflow.bie`` and opened as a
    fixed-point model (:func:`open_bie`).
    """
    from npuflow.ir.load import is_bie_file

    if not isinstance(source, onnx.ModelProto) and (str(source).endswith(".bie") or is_bie_file(source)):
        return open_bie(source, platform=platform)
    return FloatModel(source, threads=threads)


def file_key(path: str | os.PathLike) -> tuple[str, int, int, int, int]:
    """Cache key of a model file: its resolved path, size, modification time, change time (ns) and
    inode. A file replaced with the same size and mtime (``cp -p``, ``rsync -t``, tar) gets a new
    change time (no user call sets it) or a new inode, so a new key; nothing is read, so a cached
    model costs one ``stat`` per call."""
    p = Path(path).resolve()
    st = p.stat()
    return (str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
