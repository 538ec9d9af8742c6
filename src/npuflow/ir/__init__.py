"""Loading, validating and inspecting ONNX graphs."""
from npuflow.ir.load import load_model, model_inputs, model_outputs, initializer_names
from npuflow.ir.validate import validate_graph

__all__ = ["load_model", "model_inputs", "model_outputs", "initializer_names", "validate_graph"]
