"""Fixed-point analysis: fusion, calibration, format choice, the integer program and the BIE."""
