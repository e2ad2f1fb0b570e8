"""Smoke test of the hand-off benchmark harness: structure and the no-row-lost count, never timings."""
from __future__ import annotations

import io

import pydicom

from benchmarks.handoff import bench_audit, chest_dicom, rows_for


def test_audit_benchmark_counts_every_row():
    r = bench_audit(n_single=20, writers=2, rows_each=25)
    assert r["single"]["n"] == 20 and r["expected"] == 50
    assert r["written"] == 50 and r["lost"] == 0 and r["exit_codes"] == [0, 0]


def test_benchmark_input_is_a_complete_dicom_and_rows_render():
    ds = pydicom.dcmread(io.BytesIO(chest_dicom(64, study_uid="1.2.3")))
    assert ds.StudyInstanceUID == "1.2.3" and ds.Rows == 64 and ds.PatientID == "BENCH-0"
    stat = {"n": 1, "p50": 1.0, "p95": 1.0, "mean": 1.0, "min": 1.0, "max": 1.0}
    r = {"model": "m", "targets": {"pdf_p50_ms": 300.0, "pdf_bytes": 1_000_000, "dicom_p50_ms": 200.0,
                                   "round_trip_p50_s": 2.0, "audit_p95_ms": 2.0, "audit_lost": 0},
         "documents": {"pdf": stat, "pdf_cpu": stat, "pdf_bytes": 10, "sc_sr": stat, "sc_sr_cpu": stat, "sc_bytes": 10,
                       "sr_bytes": 10},
         "round_trip": {"skipped": "no Orthanc"},
         "audit": {"single": stat, "writers": 2, "rows_each": 1, "written": 1, "expected": 2, "lost": 1,
                   "exit_codes": [0, 0], "concurrent_wall_s": 0.1}}
    rows = rows_for(r)
    assert [x["result"] for x in rows] == ["PASS", "PASS", "PASS", "SKIP", "PASS", "MISS"]  # a lost row is a MISS
