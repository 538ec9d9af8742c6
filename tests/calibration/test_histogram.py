import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from npuflow.calibration.histogram import BINS, AbsHistogram


def test_percentile_and_max_hand_values():
    h = AbsHistogram()
    h.update(np.array([-4.0, 1.0, 2.0, 3.0], np.float32))
    assert h.edge == 8.0 and h.abs_max == 4.0 and h.count == 4  # edge: power of two strictly above the max
    assert h.percentile(1.0) == 4.0
    # 3 of 4 values are <= 3.0: the 0.75 percentile is the upper edge of 3.0's bin
    assert abs(h.percentile(0.75) - (3.0 + 8.0 / BINS)) < 1e-9
    assert h.percentile(0.25) <= 1.0 + 8.0 / BINS


def test_all_zero_and_empty():
    h = AbsHistogram()
    assert h.percentile(0.999) == 0.0
    h.update(np.zeros(10, np.float32))
    assert h.count == 10 and h.percentile(0.5) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=50), min_size=1, max_size=6),
       st.randoms(use_true_random=False))
def test_order_independent(chunks, rnd):
    """Same data in any order / grouping gives identical counts (the determinism guarantee)."""
    a = AbsHistogram()
    for c in chunks:
        a.update(np.array(c, np.float32))
    shuffled = list(chunks)
    rnd.shuffle(shuffled)
    b = AbsHistogram()
    for c in shuffled:
        b.update(np.array(c, np.float32))
    flat = AbsHistogram()
    flat.update(np.array([v for c in chunks for v in c], np.float32))
    merged = AbsHistogram()
    for c in chunks:
        part = AbsHistogram()
        part.update(np.array(c, np.float32))
        merged.merge(part)
    for other in (b, flat, merged):
        assert other.edge == a.edge and other.abs_max == a.abs_max and other.count == a.count
        np.testing.assert_array_equal(other.counts, a.counts)


def test_percentile_close_to_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000).astype(np.float32)
    h = AbsHistogram()
    for chunk in np.array_split(x, 7):
        h.update(chunk)
    exact = np.quantile(np.abs(x), 0.999)
    assert abs(h.percentile(0.999) - exact) <= 2 * h.edge / BINS


def test_mse_prefers_clipping_for_heavy_tails():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(100_000).astype(np.float32)
    x[:5] = 30.0  # a few outliers
    h = AbsHistogram()
    h.update(x)
    # with coarse (4-bit) steps, clipping the outliers wins; with int8 steps keeping them wins
    assert h.quant_mse(4.0, 7) < h.quant_mse(30.0, 7)
    assert h.quant_mse(30.0, 127) < h.quant_mse(4.0, 127)


def test_per_input_percentile_is_exact_and_order_independent():
    rng = np.random.default_rng(3)
    chunks = [rng.standard_normal(5000).astype(np.float32) * (i + 1) for i in range(4)]
    h = AbsHistogram(track=(0.999, 0.999999))
    for c in chunks:
        h.update(c)
    for q in (0.999, 0.999999):
        expect = max(float(np.sort(np.abs(c))[int(np.ceil(q * c.size)) - 1]) for c in chunks)
        assert h.per_input_percentile(q) == expect
    r = AbsHistogram(track=(0.999, 0.999999))
    for c in reversed(chunks):
        r.update(c)
    assert r.qmax == h.qmax
    assert h.per_input_percentile(1.0) == h.abs_max


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 3000), spread=st.floats(-40, 40),
       kind=st.sampled_from(["normal", "relu", "ties", "constant", "tiny", "sampled_high", "sampled_low", "near_max"]),
       subsample=st.sampled_from([1 << 16, 64]))
def test_compiled_update_equals_numpy(seed, size, spread, kind, subsample, monkeypatch):
    """The compiled update (numba) gives the numpy path's counts, edge, abs max, count and
    per-input quantiles, and those quantiles are exact over every value (not the subsample): bin
    boundaries hit exactly (ties), runs of one bin (ReLU zeros, constants), values too small for
    float32 scaling, the every-s-th subsample, subsamples that see only the largest values (the
    threshold must fall back) or none of them, and a top bin full of values below the max (the
    plateau shortcut must not answer)."""
    import npuflow.calibration.histogram as H
    from npuflow.sim.fast._nb import HAVE_NUMBA

    if not HAVE_NUMBA:  # pragma: no cover - numba is in the test extra
        raise AssertionError("numba missing: install the test extra")
    monkeypatch.setattr(H, "SUBSAMPLE_LIMIT", subsample)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size) * 2.0 ** spread
    if kind == "relu":
        x = np.maximum(x, 0)
    elif kind == "ties":  # multiples of the bin width of edge 2**k
        x = rng.integers(-BINS, BINS, size) * 2.0 ** (int(spread) - 12)
    elif kind == "constant":
        x = np.full(size, 2.0 ** spread)
    elif kind == "tiny":
        x = x * 2.0 ** -120
    elif kind == "near_max":  # every value in the top bin, few of them equal to the max (not a plateau)
        x = np.sign(x) * (1.0 - rng.random(size) * 2.0 ** -14) * 2.0 ** int(spread)
    elif kind in ("sampled_high", "sampled_low"):  # the subsample (every s-th) holds the large values or misses them
        s = -(-size // subsample)
        big = np.zeros(size, bool)
        big[::s] = True
        x = np.where(big if kind == "sampled_high" else ~big, x * 64.0, x)
    x = x.astype(np.float32)
    track = (0.5, 0.999, 0.999999)
    inputs = [x, x[: max(1, size // 3)] * np.float32(3.0),  # a second input: growth and folding
              x * np.float32(0.25)]  # a tail below the previous input's (the guess misses)
    hists = {}
    for mode in ("numpy", "compiled"):
        monkeypatch.setenv("NPUFLOW_SIM", "numpy" if mode == "numpy" else "")
        h = AbsHistogram(track=track)
        for v in inputs:
            h.update(v)
        hists[mode] = h
    a, b = hists["numpy"], hists["compiled"]
    np.testing.assert_array_equal(a.counts, b.counts)
    assert (a.edge, a.abs_max, a.count, a.qmax) == (b.edge, b.abs_max, b.count, b.qmax)
    for q in track:  # the order statistic of rank ceil(q n) - 1 of each input's every |x|, max over inputs
        exact = max(float(np.sort(np.abs(v))[int(np.ceil(q * v.size)) - 1]) for v in inputs)
        assert a.per_input_percentile(q) == exact


def _numpy_channel_stats(y):
    axes = tuple(i for i in range(y.ndim) if i != 1)
    return y.astype(np.float64).sum(axis=axes), np.maximum(y.max(axis=axes), -y.min(axis=axes)).astype(np.float64)


def test_channel_stats_hand_values():
    """Order matters in float64 here, and the compiled sum follows numpy's pairwise order: 16
    values of one channel are two blocks feeding eight running sums (lanes 0..7), combined as
    ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)). With 2**60 at index 0 and -2**60 at index 8 (both lane 0)
    and 1.0 everywhere else, lane 0 cancels exactly and the others hold 2.0 each: 14. A sequential
    sum loses the seven 1.0 added after 2**60 (its ulp is 256): 7."""
    from npuflow.calibration.histogram import channel_stats

    row = np.ones(16, np.float32)
    row[0], row[8] = np.float32(2.0**60), np.float32(-(2.0**60))
    y = np.stack([row, -row * np.float32(0.5)])[None]  # (1, 2, 16)
    s, m = channel_stats(y, True, True)
    assert s[0] == 14.0 and s[1] == -7.0
    assert list(m) == [2.0**60, 2.0**59]
    seq = 0.0
    for v in row.astype(np.float64):
        seq += v
    assert seq == 7.0  # the order is what the test pins down
    ref_s, ref_m = _numpy_channel_stats(y)
    assert np.array_equal(s, ref_s) and np.array_equal(m, ref_m)
    # only what is asked for; a channel of zeros (and -0.0) has sum 0 and max 0
    z = np.zeros((1, 3, 2, 2), np.float32)
    z[0, 1] = -0.0
    assert channel_stats(z, True, False)[1] is None and channel_stats(z, False, True)[0] is None
    assert list(channel_stats(z, True, True)[1]) == [0.0, 0.0, 0.0]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 6), spatial=st.lists(st.integers(1, 300), min_size=0, max_size=2),
       batch=st.sampled_from([1, 1, 1, 2]), spread=st.floats(1, 40),
       layout=st.sampled_from(["contiguous", "transposed", "float64"]))
def test_channel_stats_equals_numpy(seed, c, spatial, batch, spread, layout, monkeypatch):
    """Per-channel float64 sums and abs maxima: the compiled pass (float32, batch 1, contiguous)
    gives numpy's float64 values bit for bit, also with values spread over many binades (where
    the summation order changes the result) and runs longer than numpy's 128-value leaves; other
    layouts go through numpy; NPUFLOW_SIM=numpy gives the same."""
    from npuflow.calibration.histogram import channel_stats

    rng = np.random.default_rng(seed)
    shape = (batch, c, *spatial)
    y = (rng.standard_normal(shape) * np.exp2(rng.uniform(-spread, spread, shape))).astype(np.float32)
    if layout == "transposed" and y.ndim >= 3:
        y = np.swapaxes(np.swapaxes(y, 1, 2).copy(), 1, 2)  # the same values, not C-contiguous
    elif layout == "float64":
        y = y.astype(np.float64)
    ref_s, ref_m = _numpy_channel_stats(y)
    for mode in ("", "numpy"):
        monkeypatch.setenv("NPUFLOW_SIM", mode)
        s, m = channel_stats(y, True, True)
        assert s.dtype == np.float64 and m.dtype == np.float64
        assert np.array_equal(s, ref_s), (mode, s - ref_s)
        assert np.array_equal(m, ref_m)


def test_channel_stats_long_runs_equal_numpy():
    """Channels of 112x112 and 208x208 values (leaves, several split levels, a remainder that is
    not a multiple of eight) with values over 60 binades."""
    from npuflow.calibration.histogram import channel_stats

    rng = np.random.default_rng(7)
    for shape in [(1, 3, 112, 112), (1, 2, 208, 208), (1, 2, 1, 1001), (1, 4, 129)]:
        y = (rng.standard_normal(shape) * np.exp2(rng.uniform(-30, 30, shape))).astype(np.float32)
        s, m = channel_stats(y, True, True)
        ref_s, ref_m = _numpy_channel_stats(y)
        assert np.array_equal(s, ref_s) and np.array_equal(m, ref_m), shape
