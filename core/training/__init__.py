"""Training: how a model is *made* and chosen -- one recipe fitted on a patient-grouped split (`fit`: `train`,
`fit_model`, `load_training_data`, `choose_operating_point`), augmentation (`augment`), patient-grouped
cross-validation one fold per job (`cv`: `train_fold`, `aggregate_cv`, `pooled_oof`), the k fold models shipped
as one averaged model (`fold_ensemble`), the second-lab check that breaks ties (`site_check`) and the input
guards' statistics (`guards`: `fit_and_save_ood`, `measure_modality_guard`, `measure_ood`).

Above inference, data, evaluation and fields; nothing below imports it. Command: `python -m core.train`.
"""
