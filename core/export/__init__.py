"""Models exported for serving: a TensorFlow SavedModel (TensorFlow Serving) or ONNX (onnxruntime).

    python -m core.export --task malaria --model secondlook_cnn --format savedmodel exports/malaria_cnn

The exported graph takes model-size pixels (0..255) and does the normalisation and the card's calibration inside,
so a client only decodes, converts channels and resizes. Contract: `secondlook_signature.json` beside the export.
"""
from core.export.writers import ExportError, export, export_onnx, export_savedmodel

__all__ = ["ExportError", "export", "export_onnx", "export_savedmodel"]
