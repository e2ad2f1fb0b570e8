"""SecondLook core: everything but the Streamlit screens, so the app, the commands and the tests share one path.

Packages, lowest first (a package imports only from those above it, plus `config`):

- `core.io`          decode what a user or a dataset hands us (images, DICOM) into uint8 pixels, or `InputError`
- `core.models`      the task and model registry, architectures, the model store, BatchNorm folding, training
- `core.inference`   preprocessing, the traced forward pass, Grad-CAM, input guards, single-image scoring
- `core.data`        manifests, leak-free splits by patient, prepared arrays, demo samples
- `core.evaluation`  metrics, operating points, records on the model cards, charts, misclassified-case review

Commands (`python -m core.<verb>`, thin: they parse arguments and call the packages): `train`, `evaluate`,
`predict`, `report`, `samples`, `guard`; `secondlook <verb>` runs the same (`core.cli`).
Never imports Streamlit.
"""
