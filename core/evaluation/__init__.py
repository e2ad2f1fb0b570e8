"""Evaluation: plain arrays in, plain numbers out (`metrics`), operating points in plain language
(`operating_point`), patient-level intervals (`intervals`, cluster bootstrap; `patients` finds each prediction's
patient), calibration fits (`calibration`), figures (`charts`) and the misclassified-case review (`reviews`).
What the model cards record is one layer up, in `core.cards`. Import the module you need, e.g.
`from core.evaluation import metrics`.
"""
