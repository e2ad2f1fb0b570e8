"""Cards: what each bundled model's card records -- test looks and stored predictions (`records`:
`score_test_once`, `evaluate_bundled`, `build_fold_ensemble`), patient-level intervals (`patient_cards`:
`add_patient_level`), external sets (`external`: `add_external`, `external_summary`) and the tables generated for
the README and docs/evaluation.md (`report`: `shipped_table`, `readme_tables`, `evaluation_tables`,
`write_tables`).

Top of the library: it reads models, training, sites and fields. Commands: `python -m core.evaluate`,
`python -m core.report`.
"""
