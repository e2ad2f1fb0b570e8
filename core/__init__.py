"""SecondLook core: everything but the Streamlit screens, so the app, the commands and the tests share one path.

Layers, lowest first; a module imports only from its own layer and those below (checked by tests/test_layout.py):

- `config`, `registry`  settings; what each task and model *is* (labels, input spec, recipe)
- `io`          decode what a user or a dataset hands us (images, DICOM) into uint8 pixels, or `InputError`
- `models`      networks, the verified model store, BatchNorm folding, which model a task ships (`selection`)
- `inference`   preprocessing, the traced forward pass, calibration map, Grad-CAM, input guards, routing, scoring
- `export`      ONNX and SavedModel graphs, the onnxruntime engine
- `data`        manifests, leak-free splits by patient, prepared arrays, stain normalisation, demo samples
- `evaluation`  metrics, intervals, calibration fits, operating points, charts, misclassified-case review
- `fields`      whole smear fields: find, cut and screen cells
- `site`        site profiles: local validation, operating point and calibration
- `training`    how a model is made: fitting, cross-validation, fold ensembles, second-site check, guard statistics
- `cards`       what a model card records: test looks, patient-level intervals, external sets, generated tables
- `audit`, then `handoff` and `batch`   the audit log; PDF/DICOM hand-off to a PACS; batch scoring
- `monitoring`  what was scored: volume, flag and withheld rates, drift of scores against validation (PSI, KS)

Commands (`python -m core.<verb>`, thin: they parse arguments and call the packages): `train`, `evaluate`,
`predict`, `report`, `samples`, `guard`, `monitor`; `secondlook <verb>` runs the same (`core.cli`).
Never imports Streamlit.
"""
