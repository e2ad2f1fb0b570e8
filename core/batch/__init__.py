"""Batch screening of an archive: `python -m core.batch --task T INPUT... --out FILE.csv|FILE.parquet`.

Same rows as core.predict (core.inference.rows), one per file, resumable, duplicates scored once; an embedded engine
(`local`, default) and a Ray Data engine (`ray`) that write the same file. See docs/scale.md.
"""
from core.batch.job import Summary, run_batch

__all__ = ["Summary", "run_batch"]
