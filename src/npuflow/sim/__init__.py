"""Bit-accurate integer simulator: fixed-point primitives and reference kernels.

The numerics are specified in ``docs/fixed-point.md`` (version :data:`NUMERICS_VERSION`);
:mod:`npuflow.sim.fixed_point` holds the shared primitives and :mod:`npuflow.sim.kernels`
the per-op reference integer kernels (registry ``KERNELS``).
"""

from __future__ import annotations

from npuflow.sim.fixed_point import NUMERICS_VERSION, QFormat

__all__ = ["NUMERICS_VERSION", "QFormat"]
