"""A real Orthanc PACS for tests: config in a temp dir, free localhost ports, started and ALWAYS stopped.

`orthanc_server(tmp_path)` is a context manager yielding an `Orthanc` (DICOM node + REST helpers). Our test AE
title is registered as a modality so C-FIND, C-GET and C-STORE are allowed; remote access is off, so Orthanc
listens for this machine only. Without the `Orthanc` binary the tests skip locally and fail in CI.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.browser import free_port, stop_process
from tests.conftest import IN_CI

TEST_AET = "SLTEST"
ORTHANC_AET = "ORTHANC"
START_TIMEOUT = 60.0


def require_orthanc() -> str:
    exe = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if exe:
        return exe
    msg = "the Orthanc binary is not installed (Debian package 'orthanc'; .ci/run installs it)"
    if IN_CI:
        pytest.fail("CI must have Orthanc: " + msg)
    pytest.skip(msg)


@dataclass
class Orthanc:
    dicom_port: int
    http_port: int
    aet: str = ORTHANC_AET
    log: Path | None = None

    @property
    def node(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def rest(self, path: str, data: bytes | None = None, method: str | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=15) as r:
            body = r.read()
        ctype = r.headers.get("Content-Type", "")
        return json.loads(body) if "json" in ctype else body

    def upload(self, dicom: bytes) -> dict:
        return self.rest("/instances", data=dicom, method="POST")


def write_config(folder: Path, dicom_port: int, http_port: int, test_port: int) -> Path:
    cfg = {
        "Name": "SecondLookTestPACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AET,
        "DicomCheckCalledAet": True,  # a wrong called AE title is refused: the "refused association" test
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [],
        "DicomModalities": {"secondlook": [TEST_AET, "127.0.0.1", test_port]},
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckModalityHost": False,
        "SaveJobs": False,
        "StableAge": 1,
        "DicomScpTimeout": 10,
        "DicomAssociationCloseDelay": 0,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 4,
        "DicomThreadsCount": 2,
        "LimitFindResults": 0,
        "OverwriteInstances": True,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


@contextlib.contextmanager
def orthanc_server(tmp: Path):
    exe = require_orthanc()
    tmp.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    cfg = write_config(tmp, dicom_port, http_port, free_port())
    log = tmp / "orthanc.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([exe, str(cfg)], stdout=logf, stderr=subprocess.STDOUT, cwd=tmp)
    server = Orthanc(dicom_port, http_port, log=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                server.rest("/system")
                with socket.create_connection(("127.0.0.1", dicom_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start within {START_TIMEOUT:g} s: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield server
    finally:
        stop_process(proc, 20)


@contextlib.contextmanager
def silent_server(drop: bool = False, accepted: list | None = None):
    """A TCP server that accepts connections and never says anything: the 'PACS times out' case. With `drop`, it
    closes each connection at once instead (a PACS that hangs up during association). `accepted` gets one entry a
    connection."""
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    conns, stop = [], threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                if accepted is not None:
                    accepted.append(time.monotonic())
                if drop:
                    c.close()
                    continue
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=2)
        for c in conns:
            c.close()
        srv.close()


def make_study(n: int = 2, size: int = 256, seed: int = 0, patient_id: str = "PACS-TEST-1") -> list[bytes]:
    """A DX study made in code: `n` chest-X-ray-like pictures with full patient/study/series/SOP UIDs."""
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.imagegen import make_dicom

    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    y, x = np.mgrid[0:size, 0:size]
    out = []
    for i in range(n):
        lungs = 120 + 60 * np.exp(-(((x - size * 0.33) / (size * 0.14)) ** 2 + ((y - size * 0.5) / (size * 0.3)) ** 2))
        lungs += 60 * np.exp(-(((x - size * 0.67) / (size * 0.14)) ** 2 + ((y - size * 0.5) / (size * 0.3)) ** 2))
        img = np.clip(255 - lungs + rng.normal(0, 8 + 4 * i, (size, size)), 0, 255).astype(np.uint8)
        out.append(make_dicom(img, extra={
            "StudyInstanceUID": study, "SeriesInstanceUID": series, "PatientID": patient_id, "StudyID": "1",
            "StudyTime": "101500", "SeriesNumber": 1, "InstanceNumber": i + 1, "StudyDescription": "Chest PA (test)",
            "ReferringPhysicianName": "", "PatientOrientation": ["L", "F"]}))
    return out
