"""IP evaluator: NPU/CPU placement with reasons, per-layer cost estimate and FPS.

Public API::

    evaluate_model(model, platform, *, model_name="model", datapath_bits=8, weight_bits=8,
                   weight_bandwidth=None, dma_bandwidth=None) -> EvalResult
    place_model(model, platform) -> list[Placement]
"""
from npuflow.evaluate.evaluator import evaluate_model
from npuflow.evaluate.placement import Placement, place_model
from npuflow.evaluate.result import EvalResult, NodeEval

__all__ = ["EvalResult", "NodeEval", "Placement", "evaluate_model", "place_model"]
