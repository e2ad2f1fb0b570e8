"""Site profiles (local validation): a site's own labelled cases give a local operating point and calibration.

Modules: `cases` (read a manifest, uploads or a zip and check them), `validate` (pure evaluation: rates with
intervals, ROC, calibration, proposed point, Platt recalibration), `build` (score + evaluate + profile),
`profiles` (the SQLite store, export/import as JSON, model-checksum check), `fields` (the malaria_fields cells as
a new site for the NIH-trained cell models). Command: `python -m core.site`.
"""
