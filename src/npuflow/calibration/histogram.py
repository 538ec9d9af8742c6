"""Streaming, order-independent histogram of absolute values.

The histogram has ``BINS`` equal bins over ``[0, edge]`` where ``edge`` is always a power of two:
the smallest one >= the running abs max. When a larger value arrives, the edge doubles (k times)
and groups of 2**k bins merge. Because bin boundaries of different power-of-two edges nest and a
division by a power of two is exact in floating point, the final counts depend only on the data,
not on the order or grouping in which it arrived: calibration with 1, 2 or 4 threads, or in any
batch order, gives identical statistics. Memory is constant in the number of inputs.
"""
from __future__ import annotations

import math

import numpy as np

from npuflow.sim.fast._nb import HAVE_NUMBA, njit, use_numba

BINS = 4096
#: tensors with more values than this are histogrammed (the pooled counts) on a deterministic
#: subsample: every s-th value in memory order, s = ceil(size / SUBSAMPLE_LIMIT). The abs max and
#: the tracked per-input quantiles are always exact, over every value.
SUBSAMPLE_LIMIT = 1 << 16
# (was 1 << 18: counting is the largest part of the statistics. Ranking the per-input quantiles
# on the subsample too cost accuracy on models with large maps (yolox_nano recall 44.6 -> 39.0 %):
# they come from one pass over every value instead, `_at_least`: benchmarks/README.md)


if HAVE_NUMBA:

    @njit(nogil=True)
    def _count(x, stride, inv, counts, thr, vals, bins):  # pragma: no cover - jitted
        # counts[int32(|x[i]| * inv)] += 1 for i = 0, stride, 2 * stride, ... (the float32 product
        # and truncation of the numpy path); the |x| >= thr (and their bins) go to vals/bins while
        # they fit. Returns how many there were.
        k = 0
        cap = vals.size
        for i in range(0, x.size, stride):
            a = abs(x[i])
            b = np.int32(a * inv)
            counts[b] += 1
            if a >= thr:
                if k < cap:
                    vals[k] = a
                    bins[k] = b
                k += 1
        return k

    @njit(nogil=True)
    def _at_least(x, thr, vals):  # pragma: no cover - jitted
        # the |x| >= thr of every (finite) value, in memory order, while they fit; returns how many
        # there are. Blocks of 64 are first screened by their largest |x| as int32 bits (the sign
        # bit cleared: same order as the non-negative floats), a max reduction that vectorizes;
        # only blocks that reach thr are scanned value by value.
        xi = x.view(np.int32)
        ti = np.float32(thr)
        tb = np.int32(np.array([ti]).view(np.int32)[0])
        k = 0
        cap = vals.size
        n = x.size
        for base in range(0, n - n % 64, 64):
            m = np.int32(0)
            for j in range(64):
                m = max(m, xi[base + j] & 0x7FFFFFFF)
            if m >= tb:
                for j in range(base, base + 64):
                    a = abs(x[j])
                    if a >= ti:
                        if k < cap:
                            vals[k] = a
                        k += 1
        for j in range(n - n % 64, n):
            a = abs(x[j])
            if a >= ti:
                if k < cap:
                    vals[k] = a
                k += 1
        return k

    @njit(nogil=True)
    def _count_at_least(x, tb):  # pragma: no cover - jitted
        # how many |x| have int32 bits (sign cleared) >= tb: a count that vectorizes
        xi = x.view(np.int32)
        c = 0
        for i in range(x.size):
            c += (xi[i] & 0x7FFFFFFF) >= tb
        return c

    @njit(nogil=True)
    def _abs_max_bits(x):  # pragma: no cover - jitted
        # max |x| as the int32 bit pattern with the sign cleared: the order of those patterns is
        # the order of |x| for finite floats, and inf and every NaN lie above all finite ones
        # (>= 0x7F800000); one integer max that vectorizes instead of numpy's max and min passes
        xi = x.view(np.int32)
        m = np.int32(0)
        for i in range(xi.size):
            m = max(m, xi[i] & 0x7FFFFFFF)
        return m

    @njit(nogil=True)
    def _tail(x, stride, inv, lowest, vals, bins):  # pragma: no cover - jitted
        # the sampled |x| whose bin is >= lowest, and their bins, in memory order
        k = 0
        for i in range(0, x.size, stride):
            a = abs(x[i])
            b = np.int32(a * inv)
            if b >= lowest:
                vals[k] = a
                bins[k] = b
                k += 1
        return k

    @njit(nogil=True)
    def _pairwise_block(row, lo, n):  # pragma: no cover - jitted
        # numpy's pairwise summation of float64(row[lo:lo + n]) for n <= 128 (its leaf: eight
        # running sums, combined as a tree, then the remainder in order)
        if n < 8:
            res = 0.0
            for i in range(lo, lo + n):
                res += np.float64(row[i])
            return res
        r0 = np.float64(row[lo])
        r1 = np.float64(row[lo + 1])
        r2 = np.float64(row[lo + 2])
        r3 = np.float64(row[lo + 3])
        r4 = np.float64(row[lo + 4])
        r5 = np.float64(row[lo + 5])
        r6 = np.float64(row[lo + 6])
        r7 = np.float64(row[lo + 7])
        i = 8
        end = n - n % 8
        while i < end:
            r0 += np.float64(row[lo + i])
            r1 += np.float64(row[lo + i + 1])
            r2 += np.float64(row[lo + i + 2])
            r3 += np.float64(row[lo + i + 3])
            r4 += np.float64(row[lo + i + 4])
            r5 += np.float64(row[lo + i + 5])
            r6 += np.float64(row[lo + i + 6])
            r7 += np.float64(row[lo + i + 7])
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += np.float64(row[lo + i])
            i += 1
        return res

    @njit(nogil=True)
    def _pairwise_sum(row, los, ns, stage, vals):  # pragma: no cover - jitted
        # float64 sum of ``row`` in numpy's pairwise order (numpy/_core/src/umath/
        # loops_utils.h.src, PW_BLOCKSIZE 128: a run longer than 128 splits at n2 = n // 2 rounded
        # down to a multiple of 8, and the sum is left + right): the float64 value numpy's ``sum``
        # gives for the float64 copy of one contiguous run, bit for bit. The recursion unrolled
        # onto a stack (numba's cache mishandles recursive functions); ``los``/``ns``/``stage``/
        # ``vals``: scratch of >= 64 entries (depth < 64 for any array size)
        n = row.size
        if n <= 128:
            return _pairwise_block(row, 0, n)
        sp = 0
        vp = 0
        los[0] = 0
        ns[0] = n
        stage[0] = 0
        while sp >= 0:
            lo = los[sp]
            m = ns[sp]
            if m <= 128:
                vals[vp] = _pairwise_block(row, lo, m)
                vp += 1
                sp -= 1
                continue
            half = m // 2
            half -= half % 8
            if stage[sp] == 0:  # the left half first
                stage[sp] = 1
                sp += 1
                los[sp] = lo
                ns[sp] = half
                stage[sp] = 0
            elif stage[sp] == 1:  # then the right half
                stage[sp] = 2
                sp += 1
                los[sp] = lo + half
                ns[sp] = m - half
                stage[sp] = 0
            else:  # both done: left + right
                vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
                vp -= 1
                sp -= 1
        return vals[0]

    @njit(nogil=True)
    def _channel_stats(y, bits, sums, maxes, want_sums, want_maxes):  # pragma: no cover - jitted
        # per row c of y (C, S) float32: sums[c] = its float64 sum in numpy's order; maxes[c] =
        # max |y| as int32 bits with the sign cleared (``bits``: y viewed as int32; the order of
        # those patterns is the order of |y|, an integer max that vectorizes)
        los = np.empty(64, dtype=np.int64)
        ns = np.empty(64, dtype=np.int64)
        stage = np.empty(64, dtype=np.int8)
        vals = np.empty(64, dtype=np.float64)
        for c in range(y.shape[0]):
            if want_sums:
                sums[c] = _pairwise_sum(y[c], los, ns, stage, vals)
            if want_maxes:
                m = np.int32(0)
                for j in range(bits.shape[1]):
                    m = max(m, bits[c, j] & 0x7FFFFFFF)
                maxes[c] = m


def channel_stats(y: np.ndarray, sums: bool, maxes: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-channel (axis 1) float64 sums and abs maxima of ``y`` (ndim >= 2, finite values):
    ``y.astype(float64).sum(axis=all but 1)`` and ``max(y.max(...), -y.min(...))`` as float64,
    each only when asked. One compiled pass for a C-contiguous float32 ``y`` of batch 1 (the
    calibration's case), giving the same float64 values as numpy (its pairwise summation order
    within a channel, which is one contiguous run there); numpy otherwise."""
    c = y.shape[1]
    if HAVE_NUMBA and use_numba() and y.dtype == np.float32 and y.shape[0] == 1 and y.flags.c_contiguous and y.size:
        rows = y.reshape(c, -1)
        s = np.zeros(c, dtype=np.float64)
        m = np.zeros(c, dtype=np.int32)
        _channel_stats(rows, rows.view(np.int32), s, m, sums, maxes)
        return (s if sums else None), (m.view(np.float32).astype(np.float64) if maxes else None)
    axes = tuple(i for i in range(y.ndim) if i != 1)
    s = y.astype(np.float64).sum(axis=axes) if sums else None
    m = np.maximum(y.max(axis=axes), -y.min(axis=axes)).astype(np.float64) if maxes and y.size else None
    return s, m


_NO_VALS = np.empty(0, dtype=np.float32)
_NO_BINS = np.empty(0, dtype=np.int32)


def _pow2_at_least(v: float) -> float:
    """Smallest power of two strictly above v (v > 0): no value ever sits on the top edge, so the
    bins of different edges nest exactly (a value equal to the edge would need clipping into the
    last bin, which does not survive merging)."""
    _, exp = math.frexp(v)  # v = mant * 2**exp, 0.5 <= mant < 1
    return math.ldexp(1.0, exp)


class AbsHistogram:
    """Histogram of |x| over all values seen, plus exact abs max and count."""

    __slots__ = ("counts", "edge", "abs_max", "count", "track", "qmax", "memo", "tail_guess", "updates",
                 "input_max", "input_max_at", "input_max_2", "read_max")

    def __init__(self, track: tuple[float, ...] = ()) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.edge: float = 0.0  # 0 until a non-zero value is seen
        self.abs_max: float = 0.0
        self.count: int = 0
        #: quantiles q of |x| computed exactly within each update (one calibration input), and the
        #: maximum of each over all updates ("per-input percentile"): order-independent.
        self.track = tuple(q for q in track if q < 1.0)
        self.qmax: dict[float, float] = {q: 0.0 for q in self.track}
        #: values derived from the counts (e.g. the MMSE clip), cleared whenever data is added
        self.memo: dict[tuple, float] = {}
        #: where the compiled update starts collecting the upper tail (speed only, see _update_compiled)
        self.tail_guess: float = np.inf
        #: per-input maxima (npuflow.calibration.degenerate): ``updates`` counts the calibration
        #: inputs seen (one update each, in input order: the collector's order); ``input_max`` is
        #: the largest abs max of one input, ``input_max_at`` that input's 0-based index (None
        #: before any value), ``input_max_2`` the largest abs max of the other inputs (None while
        #: there is no other). Kept from the abs max every update computes anyway: no extra pass.
        self.updates: int = 0
        self.input_max: float = 0.0
        self.input_max_at: int | None = None
        self.input_max_2: float | None = None
        #: for a tensor whose readers cannot tell values apart outside an interval (consumer
        #: bounds, npuflow.analysis.flat): the largest ``|clip(x, lo, hi)|`` over every input, the
        #: most a range ever needs (``note_read_max``); None for every other tensor
        self.read_max: float | None = None

    def note_read_max(self, m: float) -> None:
        """Record one input's ``max |clip(x, lo, hi)|`` (see ``read_max``)."""
        self.read_max = float(m) if self.read_max is None else max(self.read_max, float(m))

    def _note_input_max(self, m: float, index: int) -> None:
        """Keep the largest per-input abs max (and its input) and the largest of the others."""
        if self.input_max_at is None:
            self.input_max, self.input_max_at = m, index
        elif m > self.input_max:
            self.input_max_2 = self.input_max
            self.input_max, self.input_max_at = m, index
        elif self.input_max_2 is None or m > self.input_max_2:
            self.input_max_2 = m

    def _grow(self, target: float) -> None:
        """Widen to the power-of-two edge ``target`` (> current edge), merging bins."""
        if self.edge == 0.0:
            self.edge = target
            return
        k = int(round(math.log2(target / self.edge)))
        if k <= 0:
            return
        if k >= int(math.log2(BINS)):
            merged = np.zeros(BINS, dtype=np.int64)
            merged[0] = self.counts.sum()
        else:
            g = 1 << k
            merged = np.zeros(BINS, dtype=np.int64)
            merged[: BINS // g] = self.counts.reshape(-1, g).sum(axis=1)
        self.counts = merged
        self.edge = target

    def update(self, x: np.ndarray) -> None:
        """Add one calibration input's values of this tensor.

        One pass builds this input's own histogram at its own power-of-two edge; it gives the
        exact per-input quantiles (the quantile's bin, then a partition of that bin's few values)
        and is folded into the running histogram by merging bins (exact, order-independent).
        """
        x = np.asarray(x, dtype=np.float32).ravel()
        index = self.updates
        self.updates += 1
        if x.size == 0:
            return
        self.memo.clear()
        stride = -(-x.size // SUBSAMPLE_LIMIT)
        if use_numba():
            m = float(np.array([_abs_max_bits(x)], dtype=np.int32).view(np.float32)[0])
        else:
            m = float(max(x.max(), -x.min()))  # exact abs max over every value
        if not math.isfinite(m):
            raise ValueError(f"non-finite value ({m}) among the values")
        self._note_input_max(m, index)
        n = -(-x.size // stride)  # values histogrammed: every stride-th
        self.count += n
        if m > self.abs_max:
            self.abs_max = m
        if m == 0.0:
            self.counts[0] += n
            return
        edge = _pow2_at_least(m)
        inv = BINS / edge  # a power of two: |x| * inv is |x| / bin width, correctly rounded
        compiled = inv <= 1e30 and use_numba()
        if self.track and stride > 1:
            # pooled counts on the subsample; the quantiles from every value (_track_full)
            if compiled:
                counts = np.zeros(BINS, dtype=np.int64)
                _count(x, stride, np.float32(inv), counts, np.float32(np.inf), _NO_VALS, _NO_BINS)
            else:
                counts = self._numpy_counts(np.abs(x[::stride]), inv)
            self._track_full(x, m, counts, n, edge, compiled)
            self._add_counts(counts, edge)
            return
        if compiled:
            self._update_compiled(x, stride, n, np.float32(inv), edge)
            return
        a = np.abs(x[::stride]) if stride > 1 else np.abs(x)
        if not self.track:
            self._add_counts(self._numpy_counts(a, inv), edge)
            return
        # every value is counted here (stride 1): the quantiles come from the counts' own values
        idx = self._scaled(a, inv).astype(np.int32)
        counts = self._bincount(idx)
        where = self._quantiles(counts, n)
        # one pass keeps the values of the lowest of those bins and above (the upper tail)
        sel = idx >= min(b for _, b, _ in where)
        self._track(where, a[sel], idx[sel])
        self._add_counts(counts, edge)

    @staticmethod
    def _bincount(idx: np.ndarray) -> np.ndarray:
        counts = np.bincount(idx, minlength=BINS).astype(np.int64)
        if counts.size != BINS:  # pragma: no cover - would be a bug in the edge rule
            raise AssertionError("histogram index beyond the last bin")
        return counts

    @staticmethod
    def _scaled(a: np.ndarray, inv: float, out: np.ndarray | None = None) -> np.ndarray:
        """|x| / bin width: the float32 product (exact: ``inv`` is a power of two), in float64
        where ``inv`` is beyond float32's range. |x| < edge (strictly), so the product stays below
        BINS even after rounding: no clip needed."""
        if inv > 1e30:
            return a.astype(np.float64) * inv
        return np.multiply(a, np.float32(inv), out=out)

    @classmethod
    def _numpy_counts(cls, a: np.ndarray, inv: float) -> np.ndarray:
        """Counts of the |x| values ``a`` (overwritten) in bins of width 1 / inv (numpy path)."""
        return cls._bincount(cls._scaled(a, inv, out=a).astype(np.int32))

    def _track_full(self, x: np.ndarray, m: float, counts: np.ndarray, n: int, edge: float, compiled: bool) -> None:
        """Exact per-input quantiles over every value of ``x`` (abs max ``m``; its every-s-th
        subsample gave ``counts``, ``n`` values). The subsample only guides the search, the
        result does not depend on it:

        * a plateau at the max (ReLU6's 6.0, a clipped input): when the sampled top bin holds the
          tail the quantiles need, one count of the values equal to ``m`` may show that every
          tracked quantile is ``m``;
        * otherwise a threshold: the lower edge of the bin holding the subsample's ``t``-th
          largest value, ``t`` the needed tail scaled to the subsample plus four standard
          deviations and 8. One pass collects every |x| at or above it; if they are too few to
          reach the lowest quantile's rank (a sampling miss) the threshold halves and the pass
          repeats, down to 0 (every value)."""
        size = x.size
        ranks = {q: min(size - 1, max(0, math.ceil(q * size) - 1)) for q in self.track}
        need = size - min(ranks.values())  # values from the lowest quantile's rank to the top
        t_sub = need * n / size
        top = int(np.flatnonzero(counts)[-1])
        if counts[top] >= t_sub:
            m32 = np.float32(m)
            if compiled:
                at_max = _count_at_least(x, np.int32(np.array([m32]).view(np.int32)[0]))
            else:
                at_max = int(np.count_nonzero(np.abs(x) >= m32))
            if at_max >= need:
                for q in self.track:
                    self.qmax[q] = max(self.qmax[q], float(m32))
                return
        t = min(n, int(t_sub + 4.0 * math.sqrt(t_sub)) + 8)
        b = int(np.searchsorted(np.cumsum(counts), n - t, side="right"))  # the bin of sampled rank n - t
        thr = b * (edge / BINS)
        while True:
            thr32 = np.float32(thr)
            if compiled:
                # room for every value (a plateau can hold thousands of them): only the pages
                # written are touched
                vals = np.empty(size, dtype=np.float32)
                vals = vals[: _at_least(x, thr32, vals)]
            else:
                a = np.abs(x)
                vals = a[a >= thr32]
            if vals.size >= need or thr == 0.0:
                break
            thr = thr / 2.0 if thr > 1e-30 else 0.0
        ks = {q: vals.size - (size - r) for q, r in ranks.items()}  # rank r of all = rank k of the top
        part = np.partition(vals, sorted(set(ks.values())))
        for q, k in ks.items():
            self.qmax[q] = max(self.qmax[q], float(part[k]))

    def _quantiles(self, counts: np.ndarray, n: int) -> list[tuple[float, int, int]]:
        """(q, bin of this input's q quantile, its 0-based rank inside that bin) per tracked q."""
        cum = np.cumsum(counts)
        where = []
        for q in self.track:
            k = min(n - 1, max(0, int(np.ceil(q * n)) - 1))  # 0-based rank of the quantile
            b = int(np.searchsorted(cum, k, side="right"))
            where.append((q, b, k - (int(cum[b - 1]) if b > 0 else 0)))
        return where

    def _track(self, where: list[tuple[float, int, int]], tail: np.ndarray, tail_idx: np.ndarray) -> None:
        for q, b, r in where:
            v = float(np.partition(tail[tail_idx == b], r)[r])
            if v > self.qmax[q]:
                self.qmax[q] = v

    def _update_compiled(self, x: np.ndarray, stride: int, n: int, inv: np.float32, edge: float) -> None:
        """The numpy path of ``update`` compiled (the same float32 products, so the same bins,
        counts and quantiles). When tracking, the counting pass also collects the values at or
        above a guess of the tail: 0.6 times the previous input's lowest tracked quantile (it only
        decides speed: a guess above this input's tail, or too many values, costs a second pass)."""
        counts = np.zeros(BINS, dtype=np.int64)
        if not self.track:
            _count(x, stride, inv, counts, np.float32(np.inf), _NO_VALS, _NO_BINS)
            self._add_counts(counts, edge)
            return
        thr = np.float32(self.tail_guess)
        cap = 0 if self.tail_guess == np.inf else max(4096, n >> 2)
        vals, bins = np.empty(cap, dtype=np.float32), np.empty(cap, dtype=np.int32)
        got = _count(x, stride, inv, counts, thr, vals, bins)
        where = self._quantiles(counts, n)
        lowest = min(b for _, b, _ in where)
        size = int(counts[lowest:].sum())
        if got <= cap and float(thr) <= lowest / float(inv):  # every value of bin >= lowest is >= thr
            keep = bins[:got] >= lowest
            vals, bins = vals[:got][keep], bins[:got][keep]
        else:
            vals, bins = np.empty(size, dtype=np.float32), np.empty(size, dtype=np.int32)
            _tail(x, stride, inv, lowest, vals, bins)
        if vals.size != size:  # pragma: no cover - would be a bug in the collection
            raise AssertionError("histogram tail count mismatch")
        self._track(where, vals, bins)
        self.tail_guess = 0.6 * lowest / float(inv)
        self._add_counts(counts, edge)

    def _add_counts(self, counts: np.ndarray, edge: float) -> None:
        """Fold a histogram with power-of-two ``edge`` into this one (growing this one if needed)."""
        if edge > self.edge:
            self._grow(edge)
        if edge < self.edge:
            g = 1 << int(round(math.log2(self.edge / edge)))
            folded = np.zeros(BINS, dtype=np.int64)
            if g >= BINS:
                folded[0] = counts.sum()
            else:
                folded[: BINS // g] = counts.reshape(-1, g).sum(axis=1)
            counts = folded
        self.counts += counts

    def merge(self, other: "AbsHistogram") -> None:
        """Add another histogram's data (order-independent, like update; the other's inputs
        count as later inputs for the per-input maxima)."""
        if other.count == 0:
            self.updates += other.updates
            return
        self.memo.clear()
        if other.edge:
            self._add_counts(other.counts, other.edge)
        else:
            self.counts[0] += other.counts[0]
        self.count += other.count
        self.abs_max = max(self.abs_max, other.abs_max)
        # the other's inputs come after this one's (their indices shift by this one's count)
        if other.input_max_at is not None:
            self._note_input_max(other.input_max, other.input_max_at + self.updates)
        if other.input_max_2 is not None:  # below other.input_max: never the new largest
            self._note_input_max(other.input_max_2, -1)
        self.updates += other.updates
        for q in self.track:
            self.qmax[q] = max(self.qmax[q], other.qmax.get(q, 0.0))
        if other.read_max is not None:
            self.note_read_max(other.read_max)

    def per_input_percentile(self, q: float) -> float:
        """Max over calibration inputs of each input's own ``q`` quantile of |x| (exact)."""
        if q >= 1.0:
            return self.abs_max
        if q not in self.qmax:
            raise KeyError(f"quantile {q} was not tracked during calibration")
        return self.qmax[q]

    def percentile(self, q: float) -> float:
        """Smallest bin upper edge below which at least a fraction ``q`` of all |x| lies, capped at
        the exact abs max. ``q >= 1`` returns the exact abs max."""
        if self.count == 0 or self.abs_max == 0.0:
            return 0.0
        if q >= 1.0:
            return self.abs_max
        need = q * self.count
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, need, side="left"))
        upper = (i + 1) * self.edge / BINS
        return min(upper, self.abs_max)

    def bin_centers(self) -> np.ndarray:
        width = self.edge / BINS if self.edge else 0.0
        return (np.arange(BINS) + 0.5) * width

    def quant_mse(self, clip: float, levels: int) -> float:
        """Expected squared error per value of symmetric uniform quantization with ``levels`` steps
        on each side clipping at ``clip``: rounding noise step^2/12 inside, (|x|-clip)^2 outside."""
        if self.count == 0 or clip <= 0:
            return float("inf")
        centers = self.bin_centers()
        step = clip / levels
        inside = centers <= clip
        err = np.where(inside, step * step / 12.0, (centers - clip) ** 2)
        return float(np.dot(self.counts, err) / self.count)
