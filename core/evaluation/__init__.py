"""Evaluation: plain arrays in, plain numbers out (`metrics`), operating points in plain language
(`operating_point`), patient-level intervals (`intervals`, cluster bootstrap; `patients` finds each prediction's
patient; `patient_cards` writes them on the cards), calibration fits (`calibration`), the records on each model
card (`records`, `report`), figures (`charts`) and the misclassified-case review (`reviews`). Import the module you need, e.g. `from core.evaluation import metrics`.
"""
