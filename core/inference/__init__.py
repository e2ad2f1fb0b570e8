"""Inference: pixels -> model tensor (`preprocess`), tensor -> probability through one traced graph (`forward`),
the card's calibration map from raw score to shown probability (`calibrate`), where the model looked (`explain`,
Grad-CAM), whether the input fits the model (`guard`), and the app's single-image path (`scoring`).
"""
from core.inference.forward import predict_tensors, score_sources
from core.inference.preprocess import prepare

__all__ = ["prepare", "predict_tensors", "score_sources"]
