"""Hand-off to the clinic: PDF case report (`report`), DICOM Secondary Capture + Structured Report (`dicom_out`),
a PACS node over DIMSE (`pacs`), and the CLI (`python -m core.handoff`). `case` is the only adapter to the rest
of `core`; nothing here imports Streamlit, and nothing writes to disk unless the caller asks for a file."""
