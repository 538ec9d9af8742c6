"""Kernel specializations that real runs use, compiled at install (:mod:`.precompile`).

Recorded from numba's cache after each run with an empty ``NUMBA_CACHE_DIR``: mnist_quickstart
(examples/mnist/quickstart.py), efficientnet_lite0_int8 (analysis of 100 inputs with the report,
kneron_inference, run_batch of 32), yolox_nano_int8 (20 inputs, the same). The abs-max kernels were
recorded as ``_abs_max_rows_impl`` (before the parallel and sequential ones had their own names) and
are listed under both. The uint8 x uint8 engine's (int32 sums: ``Array(int32, ...)`` accumulators, the
uint8 limb kernel) were added from the same workloads run again on a machine without VNNI, where the
1x1 convolutions use it, and from efficientnet_lite0_a16w8 (``datapath_bitwidth_mode="int16"``:
kneron_inference, run_batch of 32), compared with the dispatchers' signatures. AveragePool's, MaxPool's and GlobalAveragePool's kernels (``movement._avg_pool_hw``, ``_max_pool_hw``,
``_plane_sums``), the calibration's per-channel statistics
(``histogram._channel_stats``) and the Add of a scalar constant (``elementwise._add1_fast``) were
added by hand from their dispatchers' signatures. Regenerate after
changing a kernel's argument types (``python -m npuflow.sim.fast.precompile --record LABEL=FOLDER
...``); a signature missing here only compiles on first use.
"""

#: 71 signatures
SIGNATURES: dict[str, tuple[str, ...]] = {
    '_common._limbs_kernel.<locals>.kern': (
        "(Array(int16, 1, 'C', False, aligned=True), int64, int64, Array(float32, 2, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    '_common._uint8_limbs_kernel.<locals>.kern': (
        "(Array(int16, 1, 'C', False, aligned=True), Array(uint8, 2, 'C', False, aligned=True))",  # efficientnet_lite0_a16w8 efficientnet_lite0_int8
    ),
    '_requant._abs_max_rows_par': (
        "(Array(int32, 2, 'C', False, aligned=True), int32, Array(int32, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(int64, 2, 'C', False, aligned=True), int64, Array(int64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart
    ),
    '_requant._abs_max_rows_seq': (
        "(Array(int32, 2, 'C', False, aligned=True), int32, Array(int32, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(int64, 2, 'C', False, aligned=True), int64, Array(int64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart
    ),
    '_requant._int_abs_max_rows_par': (
        "(Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8
    ),
    '_requant._int_abs_max_rows_seq': (
        "(Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8
    ),
    '_requant._mac_out_kernel': (
        "(Array(float32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(float32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(float64, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart
        "(Array(float64, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # mnist_quickstart
        "(Array(int32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8
        "(Array(int32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    '_requant._mac_out_limbs_kernel': (
        "(Array(float32, 6, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int64, 3, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(float32, 6, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int64, 3, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(int32, 6, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int64, 3, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_a16w8 efficientnet_lite0_int8
        "(Array(int32, 6, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int64, 3, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8
    ),
    '_requant._mac_out_lut_kernel': (
        "(Array(float32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool)",  # yolox_nano_int8
        "(Array(float32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool)",  # yolox_nano_int8
        "(Array(int32, 3, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool)",  # yolox_nano_int8
    ),
    '_requant._mul_rne': (
        '(int64, int64, int64)',  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    '_requant._row': (
        "(Array(float32, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(float32, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # yolox_nano_int8
        "(Array(float32, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(float64, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart
        "(Array(float64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8
        "(Array(float64, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # mnist_quickstart
        "(Array(int32, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int64, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
        "(Array(int64, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, bool, int64, int64, int64, int64, int64, int64, float64)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    'depthwise._acc_nhwc': (
        "(Array(int16, 4, 'C', False, aligned=True), Array(int32, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int32, 3, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int8, 4, 'C', False, aligned=True), Array(int32, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int32, 3, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'depthwise._dw_kernel': (
        "(Array(int16, 4, 'C', False, aligned=True), Array(float64, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(float64, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8
        "(Array(int16, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int16, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int8, 4, 'C', False, aligned=True), Array(int32, 4, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'depthwise._finish': (
        "(Array(float64, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8
        "(Array(int32, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int32, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'depthwise._out_nhwc': (
        "(Array(int32, 3, 'C', False, aligned=True), Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int32, 3, 'C', False, aligned=True), Array(int32, 2, 'C', False, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), Array(int64, 1, 'C', True, aligned=True), bool, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int64, 2, 'C', False, aligned=True), bool, bool)",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'elementwise._add1_fast': (
        "(Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True))",  # Add of a scalar constant (added by hand: the decomposed HardSwish's x + 3)
        "(Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int16, 1, 'C', False, aligned=True))",  # the same, 16-bit (added by hand)
    ),
    'elementwise._add2_fast': (
        "(Array(int16, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int16, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
        "(Array(int16, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8
        "(Array(int8, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True))",  # yolox_nano_int8
        "(Array(int8, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, Array(int8, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'elementwise._gather': (
        "(Array(int16, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int16, 1, 'C', False, aligned=True))",  # yolox_nano_int8
        "(Array(int8, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True))",  # yolox_nano_int8
    ),
    'elementwise._gather_count': (
        "(Array(int8, 1, 'C', False, aligned=True), Array(bool, 1, 'C', False, aligned=True), Array(uint8, 1, 'C', False, aligned=True), Array(int8, 1, 'C', False, aligned=True))",  # yolox_nano_int8
    ),
    'elementwise._quantize_f': (
        "(Array(float32, 1, 'C', False, aligned=True), float64, float64, float64, Array(int8, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    'elementwise._requant_copy_f': (
        "(Array(int16, 1, 'C', False, aligned=True), float64, float64, float64, Array(int16, 1, 'C', False, aligned=True))",  # yolox_nano_int8
        "(Array(int16, 1, 'C', False, aligned=True), float64, float64, float64, Array(int8, 1, 'C', False, aligned=True))",  # yolox_nano_int8
        "(Array(int8, 1, 'C', False, aligned=True), float64, float64, float64, Array(int16, 1, 'C', False, aligned=True))",  # yolox_nano_int8
        "(Array(int8, 1, 'C', False, aligned=True), float64, float64, float64, Array(int8, 1, 'C', False, aligned=True))",  # yolox_nano_int8
    ),
    'histogram._abs_max_bits': (
        "(Array(float32, 1, 'C', False, aligned=True),)",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    'histogram._at_least': (
        "(Array(float32, 1, 'C', False, aligned=True), float32, Array(float32, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'histogram._channel_stats': (
        "(Array(float32, 2, 'C', False, aligned=True), Array(int32, 2, 'C', False, aligned=True), Array(float64, 1, 'C', False, aligned=True), Array(int32, 1, 'C', False, aligned=True), bool, bool)",  # calibration's per-channel sums and maxima (added by hand; its callees compile with it)
    ),
    'histogram._count': (
        "(Array(float32, 1, 'C', False, aligned=True), int64, float32, Array(int64, 1, 'C', False, aligned=True), float32, Array(float32, 1, 'C', False, aligned=True), Array(int32, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    'histogram._count_at_least': (
        "(Array(float32, 1, 'C', False, aligned=True), int32)",  # efficientnet_lite0_int8 yolox_nano_int8
    ),
    'histogram._tail': (
        "(Array(float32, 1, 'C', False, aligned=True), int64, float32, int64, Array(float32, 1, 'C', False, aligned=True), Array(int32, 1, 'C', False, aligned=True))",  # efficientnet_lite0_int8 mnist_quickstart yolox_nano_int8
    ),
    'movement._plane_sums': (
        "(Array(int8, 2, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True))",  # GlobalAveragePool (added by hand: 8/16-bit)
        "(Array(int16, 2, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True))",  # GlobalAveragePool (added by hand: 8/16-bit)
    ),
    'movement._max_pool_hw': (
        "(Array(int8, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True))",  # MaxPool (added by hand: 8/16-bit)
        "(Array(int16, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True))",  # MaxPool (added by hand: 8/16-bit)
    ),
    'movement._avg_pool_hw': (
        "(Array(int8, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True))",  # AveragePool (added by hand: 8/16-bit in and out)
        "(Array(int16, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True))",  # AveragePool (added by hand: 8/16-bit in and out)
        "(Array(int8, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, Array(int16, 3, 'C', False, aligned=True))",  # AveragePool (added by hand: 8/16-bit in and out)
        "(Array(int16, 3, 'C', False, aligned=True), int64, int64, int64, int64, int64, int64, int64, int64, Array(int64, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, aligned=True), int64, int64, int64, int64, Array(int8, 3, 'C', False, aligned=True))",  # AveragePool (added by hand: 8/16-bit in and out)
    ),
}
