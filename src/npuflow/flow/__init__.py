"""What ``ModelConfig.evaluate()`` and ``ModelConfig.analysis()`` run: their options, validated in
one place into frozen dataclasses (``options.py``), and the stateless engines that take them
(``engine.py``). ``npuflow.config.ModelConfig`` maps the original ktc signatures onto these."""
from __future__ import annotations

from npuflow.flow.engine import AnalysisOutcome, run_analysis, run_evaluate
from npuflow.flow.options import AnalysisOptions, EvaluateOptions, check_bitwidth_modes

__all__ = ["AnalysisOptions", "EvaluateOptions", "AnalysisOutcome", "run_analysis", "run_evaluate",
           "check_bitwidth_modes"]
