"""A PACS node over DICOM networking (pynetdicom): C-ECHO, C-STORE, study-level C-FIND and C-GET into memory.

Configured by environment: `SECONDLOOK_PACS=AET@host:port` (the archive) and `SECONDLOOK_AET` (our own AE title,
default `SECONDLOOK`; the archive must know it as a modality for C-FIND/C-GET). Every network step has a timeout
(`SECONDLOOK_PACS_TIMEOUT` seconds, default 10); nothing is retried. A PACS that is down, refuses the
association, times out or answers with a failure raises `PacsError` with a message a user can act on.
C-GET keeps what it receives in memory (pydicom datasets); nothing is written to disk.
"""
from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

DEFAULT_AET = "SECONDLOOK"
DEFAULT_TIMEOUT = 10.0
MAX_FETCH_INSTANCES = 1000
_NODE = re.compile(r"^\s*([^@\s]{1,16})@([^:\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})\s*$")

FIND_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "PatientName",
             "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")


class PacsError(RuntimeError):
    """Talking to the PACS failed; `str(exc)` is meant for the user."""


@dataclass(frozen=True)
class Node:
    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_node(text: str) -> Node:
    """'ORTHANC@127.0.0.1:4242' -> Node; anything else is a ValueError naming the expected form."""
    m = _NODE.match(text or "")
    if not m or not (0 < int(m.group(3)) < 65536):
        raise ValueError(f"PACS address {text!r} is not of the form AET@host:port (e.g. ORTHANC@127.0.0.1:4242)")
    return Node(m.group(1), m.group(2).strip("[]"), int(m.group(3)))


def configured() -> Node | None:
    """The node from `SECONDLOOK_PACS`, None when unset (the app then hides every PACS feature)."""
    text = os.environ.get("SECONDLOOK_PACS", "").strip()
    return parse_node(text) if text else None


def our_aet() -> str:
    aet = os.environ.get("SECONDLOOK_AET", "").strip() or DEFAULT_AET
    if len(aet) > 16 or "\\" in aet:
        raise ValueError(f"SECONDLOOK_AET {aet!r} must be at most 16 characters without a backslash")
    return aet


def default_timeout() -> float:
    try:
        return max(0.5, float(os.environ.get("SECONDLOOK_PACS_TIMEOUT", DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def _storage_classes() -> list[str]:
    """Image and SR storage classes we ask to receive during C-GET (one presentation context each)."""
    from pydicom import uid as u

    return [
        u.DigitalXRayImageStorageForPresentation, u.DigitalXRayImageStorageForProcessing, u.ComputedRadiographyImageStorage,
        u.SecondaryCaptureImageStorage, u.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
        u.MultiFrameGrayscaleWordSecondaryCaptureImageStorage, u.MultiFrameTrueColorSecondaryCaptureImageStorage,
        u.CTImageStorage, u.MRImageStorage, u.UltrasoundImageStorage, u.XRayAngiographicImageStorage,
        u.DigitalMammographyXRayImageStorageForPresentation, u.VLMicroscopicImageStorage,
        u.VLSlideCoordinatesMicroscopicImageStorage, u.VLPhotographicImageStorage, u.VLWholeSlideMicroscopyImageStorage,
        u.ComprehensiveSRStorage, u.EnhancedSRStorage, u.BasicTextSRStorage, u.Comprehensive3DSRStorage,
    ]


def _transfer_syntaxes() -> list[str]:
    from pydicom import uid as u

    return [u.ExplicitVRLittleEndian, u.ImplicitVRLittleEndian, u.RLELossless, u.JPEGLosslessSV1, u.JPEGBaseline8Bit]


class Pacs:
    """One remote node; each call opens its own association and always releases or aborts it."""

    def __init__(self, node: Node | str | None = None, aet: str | None = None, timeout: float | None = None) -> None:
        node = parse_node(node) if isinstance(node, str) else (node or configured())
        if node is None:
            raise PacsError("No PACS is configured: set SECONDLOOK_PACS=AET@host:port.")
        self.node = node
        self.aet = aet or our_aet()
        self.timeout = float(timeout if timeout is not None else default_timeout())

    # ------------------------------------------------------------------ plumbing
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        ae.maximum_associations = 1
        return ae

    def _associate(self, ae, what: str, **kw):
        """An established association, or one PacsError that says why not.

        An association that ends early without an answer (neither accepted, rejected nor timed out) is asked for once
        more: pynetdicom can read the PACS's closing of the socket before its A-ASSOCIATE-RJ (Orthanc 1.10 logged
        the rejection while the client saw no reply: 1 in ~8 runs of the refused-association test)."""
        for _ in range(2):
            t0 = time.monotonic()
            assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.aet, **kw)
            if assoc.is_established:
                return assoc
            timed_out = time.monotonic() - t0 >= 0.9 * self.timeout
            if assoc.is_rejected or timed_out:
                break
        raise PacsError(self._why(assoc, what, timed_out))

    def _why(self, assoc, what: str, timed_out: bool) -> str:
        where = f"the PACS {self.node}"
        if assoc.is_rejected:
            return (f"{where} refused the association for {what} (calling AE title {self.aet!r}, called "
                    f"{self.node.aet!r}). Check that the PACS knows SecondLook's AE title and that SECONDLOOK_PACS "
                    "names the PACS's own AE title.")
        try:
            with socket.create_connection((self.node.host, self.node.port), timeout=min(self.timeout, 3.0)):
                pass
        except OSError as exc:
            return f"{where} is not reachable for {what} ({exc.strerror or exc}). Is it running, and are host and port right?"
        if not timed_out:
            return (f"{where} closed the connection for {what} without accepting the association, twice. Check that "
                    f"the PACS knows SecondLook's AE title ({self.aet!r}) and that SECONDLOOK_PACS names the PACS's own "
                    f"AE title ({self.node.aet!r}).")
        return f"{where} accepted the connection but did not answer within {self.timeout:g} s ({what})."

    def _release(self, assoc) -> None:
        try:
            if assoc.is_established:
                assoc.release()
        finally:
            if assoc.is_established:
                assoc.abort()

    @staticmethod
    def _check(status, what: str, ok=(0x0000,)) -> int:
        if status is None or "Status" not in status:
            raise PacsError(f"{what}: the PACS did not answer in time or aborted the association.")
        code = int(status.Status)
        if code not in ok:
            comment = status.get("ErrorComment", "") or _status_meaning(code)
            raise PacsError(f"{what}: the PACS answered with status 0x{code:04X}" + (f" ({comment})" if comment else "") + ".")
        return code

    # ------------------------------------------------------------------ services
    def echo(self) -> None:
        """C-ECHO: raises PacsError unless the PACS answers."""
        from pynetdicom.sop_class import Verification

        ae = self._ae()
        ae.add_requested_context(Verification)
        assoc = self._associate(ae, "a connection test (C-ECHO)")
        try:
            self._check(assoc.send_c_echo(), "C-ECHO")
        finally:
            self._release(assoc)

    def store(self, datasets) -> list[str]:
        """C-STORE each dataset (e.g. an SC and an SR); returns their SOP Instance UIDs. All or an error."""
        datasets = list(datasets)
        if not datasets:
            return []
        ae = self._ae()
        contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
        if len(contexts) > 128:
            raise PacsError("too many different kinds of DICOM object for one association (over 128)")
        for sop_class, ts in sorted(contexts):
            ae.add_requested_context(sop_class, ts)
        assoc = self._associate(ae, f"sending {len(datasets)} object(s) (C-STORE)")
        sent = []
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                self._check(status, f"C-STORE of {ds.SOPInstanceUID}", ok=(0x0000, 0xB000, 0xB007, 0xB006))
                sent.append(str(ds.SOPInstanceUID))
        finally:
            self._release(assoc)
        return sent

    def find_studies(self, *, patient_id: str = "", patient_name: str = "", study_date: str = "",
                     accession_number: str = "", modality: str = "", study_uid: str = "", limit: int = 500) -> list[dict]:
        """Study-level C-FIND (Study Root). Empty filters match everything; values may use DICOM wildcards (* ?)."""
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind as FIND,
        )

        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        for kw in FIND_KEYS:
            setattr(q, kw, "")
        q.PatientID, q.PatientName, q.StudyDate = patient_id, patient_name, study_date
        q.AccessionNumber, q.ModalitiesInStudy, q.StudyInstanceUID = accession_number, modality, study_uid
        ae = self._ae()
        ae.add_requested_context(FIND)
        assoc = self._associate(ae, "listing studies (C-FIND)")
        out: list[dict] = []
        try:
            for status, ident in assoc.send_c_find(q, FIND):
                code = self._check(status, "C-FIND", ok=(0x0000, 0xFF00, 0xFF01))
                if code in (0xFF00, 0xFF01) and ident is not None:
                    out.append({kw: _text(ident.get(kw)) for kw in FIND_KEYS})
        finally:
            self._release(assoc)
        return out[:limit]

    def fetch_study(self, study_uid: str, max_instances: int = MAX_FETCH_INSTANCES) -> list:
        """C-GET every instance of a study into memory (pydicom datasets with their file meta)."""
        from pydicom.dataset import Dataset
        from pynetdicom import build_role, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelGet as GET,
        )

        if not study_uid or not re.fullmatch(r"[0-9.]{1,64}", study_uid):
            raise ValueError(f"{study_uid!r} is not a Study Instance UID")
        received: list = []

        def on_store(event) -> int:
            if len(received) >= max_instances:
                return 0xA700  # out of resources: refuse past the limit
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
            return 0x0000

        ae = self._ae()
        ae.add_requested_context(GET)
        classes = _storage_classes()
        for c in classes:
            ae.add_requested_context(c, _transfer_syntaxes())
        roles = [build_role(c, scp_role=True) for c in classes]
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = study_uid
        assoc = self._associate(ae, f"fetching study {study_uid} (C-GET)", ext_neg=roles,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            last = None
            what = f"C-GET of study {study_uid}"
            for status, _ in assoc.send_c_get(q, GET):
                last = status
                self._check(status, what, ok=(0x0000, 0xFF00, 0xB000))
            code = self._check(last, what, ok=(0x0000, 0xB000))
        finally:
            self._release(assoc)
        if code == 0xB000 and len(received) >= max_instances:
            raise PacsError(f"study {study_uid} has more than {max_instances} instances; fetched none to be safe")
        if code == 0xB000:
            raise PacsError(f"C-GET of study {study_uid}: some instances could not be sent "
                            f"({len(received)} received); their kind may not be supported.")
        return received


def _status_meaning(code: int) -> str:
    if code == 0xFE00:
        return "cancelled"
    if code in (0xA700, 0xA701, 0xA702) or 0xA700 <= code <= 0xA7FF:
        return "the PACS is out of resources"
    if code == 0xA900 or 0xA900 <= code <= 0xA9FF:
        return "the request does not match what the PACS holds"
    if code == 0x0122:
        return "the PACS does not support this kind of object"
    if code == 0x0124:
        return "not authorised: the PACS does not allow this AE title to do that"
    if 0xC000 <= code <= 0xCFFF:
        return "unable to process: e.g. the study is not there or the request was refused"
    return ""


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)


def dataset_bytes(ds) -> bytes:
    """A received dataset as Part-10 bytes in memory, for the scoring path (which takes file bytes)."""
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def is_scorable(ds) -> bool:
    """An image instance that is not one of SecondLook's own results (we never score our overlay)."""
    return "PixelData" in ds and str(ds.get("Manufacturer", "")) != "SecondLook" and str(ds.get("Modality", "")) != "SR"
