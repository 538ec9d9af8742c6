"""The ONNX optimizer: graph passes that make a model ready for quantization and the NPU.

Each pass lives in its own module and is a function ``run(model, **options) -> (model,
modified)``. A pass may change the ``model`` it is given and return it, or return a new one;
:func:`optimize` copies the caller's model once first, so the caller's ModelProto is never
changed. The numbered rules of each pass are in its module docstring and in docs/optimizer.md.

Pipeline run by :func:`optimize` (``PIPELINE`` below):

1. ``name_nodes``, ``initializers_as_inputs``, ``fix_input_shapes``, ``constant_to_initializer``
   (once each, in this order);
2. rounds of ``shape_inference``, ``constant_folding``, ``remove_identity``, ``fold_batchnorm``
   (skipped with ``keep_bn=True``), the NPU-friendly rewrites ``fuse_hardswish``,
   ``hard_sigmoid``, ``fuse_silu``, ``fuse_gelu``, ``div_to_mul``, ``fold_conv_affine`` (after the
   rewrites, so that their patterns match first), ``split_global_pool`` (skipped without
   ``platform``), then ``remove_unused``, repeated until a round changes no node or
   initializer (at most ``MAX_ROUNDS``);
3. a final ``shape_inference``.

``platform`` (optional) is a platform object such as ``npuflow.platforms.get_platform(720)``
(the optimizer is below ``npuflow.platforms`` in the layers and never imports it): the rewrites
that depend on the NPU operator table read it (docs/optimizer.md). Without it they choose the
form every platform with Mul/Add/Clip runs on its NPU and ``split_global_pool`` is skipped.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import onnx

from npuflow.errors import InvalidConfigError
from npuflow.ir.load import dims_of, load_model, model_inputs
from npuflow.passes import (
    constant_folding,
    constant_to_initializer,
    div_to_mul,
    fix_input_shapes,
    fold_batchnorm,
    fold_conv_affine,
    fuse_gelu,
    fuse_hardswish,
    fuse_silu,
    hard_sigmoid,
    initializers_as_inputs,
    name_nodes,
    remove_identity,
    remove_unused,
    shape_inference,
    split_global_pool,
)
from npuflow.passes._graph import op_counts, static_shape
from npuflow.passes._rewrite import PlatformLike, is_platform

__all__ = ["PASSES", "PIPELINE", "MAX_ROUNDS", "PassStat", "optimize", "optimize_report"]

log = logging.getLogger(__name__)

PassFn = Callable[..., "tuple[onnx.ModelProto, bool]"]

#: Every pass by name, in pipeline order.
PASSES: dict[str, PassFn] = {
    "name_nodes": name_nodes.run,
    "initializers_as_inputs": initializers_as_inputs.run,
    "fix_input_shapes": fix_input_shapes.run,
    "constant_to_initializer": constant_to_initializer.run,
    "shape_inference": shape_inference.run,
    "constant_folding": constant_folding.run,
    "remove_identity": remove_identity.run,
    "fold_batchnorm": fold_batchnorm.run,
    "fuse_hardswish": fuse_hardswish.run,
    "hard_sigmoid": hard_sigmoid.run,
    "fuse_silu": fuse_silu.run,
    "fuse_gelu": fuse_gelu.run,
    "div_to_mul": div_to_mul.run,
    "fold_conv_affine": fold_conv_affine.run,
    "split_global_pool": split_global_pool.run,
    "remove_unused": remove_unused.run,
}

#: passes that take the ``platform`` option
PLATFORM_PASSES = ("fuse_hardswish", "hard_sigmoid", "fuse_gelu", "split_global_pool")

#: (setup passes run once, passes repeated in rounds to a fixed point, final passes).
PIPELINE: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = (
    ("name_nodes", "initializers_as_inputs", "fix_input_shapes", "constant_to_initializer"),
    ("shape_inference", "constant_folding", "remove_identity", "fold_batchnorm", "fuse_hardswish", "hard_sigmoid",
     "fuse_silu", "fuse_gelu", "div_to_mul", "fold_conv_affine", "split_global_pool", "remove_unused"),
    ("shape_inference",),
)
MAX_ROUNDS = 8


@dataclass(frozen=True)
class PassStat:
    """What one run of one pass did. ``round`` is 0 for setup/final passes, 1.. inside rounds."""

    name: str
    round: int
    modified: bool
    skipped: bool
    seconds: float
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    graph_inputs_before: int = 0
    graph_inputs_after: int = 0
    initializers_before: int = 0
    initializers_after: int = 0
    input_dims_before: tuple[tuple[str, tuple[int | str | None, ...]], ...] = ()
    input_dims_after: tuple[tuple[str, tuple[int | str | None, ...]], ...] = ()
    static_before: tuple[int, int] = (0, 0)  # (node outputs with a static shape, node outputs)
    static_after: tuple[int, int] = (0, 0)
    unnamed_before: int = 0  # nodes without a name or whose name an earlier node already uses
    unnamed_after: int = 0

    @property
    def nodes_before(self) -> int:
        return sum(self.ops_before.values())

    @property
    def nodes_after(self) -> int:
        return sum(self.ops_after.values())

    def op_delta(self) -> dict[str, int]:
        """Op type -> change in node count (only the op types that changed), sorted by op type."""
        ops = sorted(set(self.ops_before) | set(self.ops_after))
        delta = {op: self.ops_after.get(op, 0) - self.ops_before.get(op, 0) for op in ops}
        return {op: d for op, d in delta.items() if d}


@dataclass(frozen=True)
class _Snapshot:
    ops: dict[str, int]
    graph_inputs: int
    initializers: int
    input_dims: tuple[tuple[str, tuple[int | str | None, ...]], ...]
    static: tuple[int, int]
    unnamed: int


def _snapshot(model: onnx.ModelProto) -> _Snapshot:
    g = model.graph
    known = {v.name for v in [*g.value_info, *g.output, *g.input] if static_shape(v) is not None}
    known |= {t.name for t in g.initializer}
    outs = [o for n in g.node for o in n.output if o]
    seen: set[str] = set()
    unnamed = 0
    for n in g.node:
        unnamed += (not n.name) or n.name in seen
        seen.add(n.name)
    return _Snapshot(
        ops=op_counts(model),
        graph_inputs=len(g.input),
        initializers=len(g.initializer),
        input_dims=tuple((vi.name, tuple(dims_of(vi))) for vi in model_inputs(model)),
        static=(sum(o in known for o in outs), len(outs)),
        unnamed=unnamed,
    )


def _check_options(keep_bn: object, input_shapes: object, progress: object, platform: object = None) -> None:
    if not is_platform(platform):
        raise InvalidConfigError(
            "platform must be None or a platform object such as npuflow.platforms.get_platform(720) "
            f"(the optimizer does not look platforms up by id), got {platform!r}"
        )
    if not isinstance(keep_bn, bool):
        raise InvalidConfigError(f"keep_bn must be True or False, got {keep_bn!r}")
    if not isinstance(progress, bool):
        raise InvalidConfigError(f"progress must be True or False, got {progress!r}")
    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        raise InvalidConfigError(
            "input_shapes must be a dict input name -> list of ints, e.g. {'x': [1, 3, 32, 320]}, "
            f"got {type(input_shapes).__name__}"
        )


def optimize_report(
    model: onnx.ModelProto,
    *,
    keep_bn: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: bool = False,
    on_pass: Callable[[PassStat, onnx.ModelProto], None] | None = None,
    platform: PlatformLike | None = None,
) -> tuple[onnx.ModelProto, list[PassStat]]:
    """Run the optimizer and return the optimized model with one :class:`PassStat` per pass run.

    ``on_pass(stat, model)`` is called after every pass run with the model as it stands then
    (copy it to keep it: later passes change it). Options as in :func:`optimize`.
    """
    _check_options(keep_bn, input_shapes, progress, platform)
    m = onnx.ModelProto()
    m.CopyFrom(load_model(model))  # refuses an invalid graph first (npuflow.ir.validate.validate_graph)
    stats: list[PassStat] = []
    options: dict[str, dict[str, object]] = {"fix_input_shapes": {"input_shapes": input_shapes}}
    options.update({name: {"platform": platform} for name in PLATFORM_PASSES})

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="optimize", unit="pass", leave=False)

    def step(name: str, rnd: int) -> bool:
        nonlocal m
        before = _snapshot(m)
        t0 = time.perf_counter()
        skipped = (name == "fold_batchnorm" and keep_bn) or (name == "split_global_pool" and platform is None)
        if bar is not None:
            bar.set_postfix_str(name)
        if skipped:
            modified = False
        else:
            m, modified = PASSES[name](m, **options.get(name, {}))
        after = _snapshot(m) if modified else before
        stat = PassStat(
            name=name, round=rnd, modified=modified, skipped=skipped, seconds=time.perf_counter() - t0,
            ops_before=before.ops, ops_after=after.ops,
            graph_inputs_before=before.graph_inputs, graph_inputs_after=after.graph_inputs,
            initializers_before=before.initializers, initializers_after=after.initializers,
            input_dims_before=before.input_dims, input_dims_after=after.input_dims,
            static_before=before.static, static_after=after.static,
            unnamed_before=before.unnamed, unnamed_after=after.unnamed,
        )
        stats.append(stat)
        log.debug("%s (round %d): %d -> %d nodes, modified=%s, %.3f s", name, rnd,
                  stat.nodes_before, stat.nodes_after, modified, stat.seconds)
        if bar is not None:
            bar.update(1)
        if on_pass is not None:
            on_pass(stat, m)
        return modified

    try:
        setup, rounds, final = PIPELINE
        for name in setup:
            step(name, 0)
        for rnd in range(1, MAX_ROUNDS + 1):
            changed = [step(name, rnd) for name in rounds]
            if not any(c for name, c in zip(rounds, changed) if name != "shape_inference"):
                break
        else:
            log.warning("optimizer still changing the graph after %d rounds; stopping there", MAX_ROUNDS)
        for name in final:
            step(name, 0)
    finally:
        if bar is not None:
            bar.close()
    log.info("optimize: %d -> %d nodes, %d pass runs", stats[0].nodes_before, stats[-1].nodes_after, len(stats))
    return m, stats


def optimize(
    model: onnx.ModelProto,
    *,
    keep_bn: bool = False,
    input_shapes: dict[str, list[int]] | None = None,
    progress: bool = False,
    platform: PlatformLike | None = None,
) -> onnx.ModelProto:
    """Return an optimized copy of ``model``; ``model`` itself is not changed.

    ``keep_bn``: leave BatchNormalization nodes unfolded. ``input_shapes``: input name -> full
    shape for inputs with dynamic dims (a dynamic batch dim alone defaults to 1; any other
    dynamic dim without an entry raises DynamicShapeError). ``progress``: show a progress bar on
    stderr. ``platform``: a platform object (``npuflow.platforms.get_platform(720)``) for the
    rewrites that depend on the NPU operator table (docs/optimizer.md). The result is
    deterministic (same input, same options: byte-identical output), every node has a unique name,
    every intermediate tensor of a supported model has a static shape, and
    ``onnx.checker.check_model`` accepts it.
    """
    return optimize_report(model, keep_bn=keep_bn, input_shapes=input_shapes, progress=progress,
                           platform=platform)[0]
