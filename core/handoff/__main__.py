"""Hand a scored case to the clinic: PDF report, DICOM SC + SR, and optionally send them to the PACS.

    python -m core.handoff --task pneumonia [--model M] FILE... [--pdf OUT.pdf] [--dicom-dir DIR] [--send]

Files are scored through the app's scoring path (same probability, warnings and Grad-CAM as Predict); one JSON
line per file goes to stdout and one audit row per scored file to the audit log (surface "handoff").
`--send` stores the SC + SR in the PACS named by `SECONDLOOK_PACS` (or `--pacs AET@host:port`). A PACS files
results under the patient of the study, so objects for `--send` carry the input's patient module; otherwise
(and in the PDF unless `--include-patient`) names and ids are left out.

Exit codes: 0 done (unreadable files are reported in their JSON line), 2 misuse, 3 the PACS failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _read(path: str) -> tuple[str, bytes | None, str | None]:
    try:
        return Path(path).name, Path(path).read_bytes(), None
    except OSError as exc:
        return Path(path).name, None, f"{path}: cannot read the file ({exc.strerror or exc})."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.handoff", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model", help="model id (default: the task's recommended model)")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("--site-profile", help="name of the site profile in use, recorded in the report and audit log")
    p.add_argument("--pdf", metavar="OUT.pdf", help="write the case report here")
    p.add_argument("--dicom-dir", metavar="DIR", help="write SC + SR files per scored image into DIR")
    p.add_argument("--send", action="store_true", help="C-STORE the SC + SR to the PACS")
    p.add_argument("--pacs", metavar="AET@host:port", help="PACS node (default: SECONDLOOK_PACS)")
    p.add_argument("--include-patient", action="store_true", help="put patient name/id from DICOM inputs into the PDF and files")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)

    from core.handoff import case as C
    from core.registry import get_task
    from core.models.selection import default_model

    try:
        task = get_task(a.task)
        model_id = a.model or default_model(a.task)
        task.model(model_id)
        info = C.model_info(a.task, model_id, a.threshold)
    except (KeyError, ValueError) as exc:
        p.error(str(exc.args[0]) if exc.args else str(exc))
    node = None
    if a.send:
        from core.handoff.pacs import configured, parse_node

        try:
            node = parse_node(a.pacs) if a.pacs else configured()
        except ValueError as exc:
            p.error(str(exc))
        if node is None:
            p.error("--send needs a PACS: set SECONDLOOK_PACS=AET@host:port or pass --pacs")

    try:
        model, ood = C.load_model(a.task, model_id)
    except (FileNotFoundError, RuntimeError) as exc:  # no model file, or one that fails its checksum
        p.error(str(exc))
    paths, files, unread = [], [], []
    for f in a.files:
        name, data, err = _read(f)
        if err:
            unread.append({"file": f, "ok": False, "error": err})
        else:
            paths.append(f)
            files.append((name, data))
    from core.users import local_user

    case = C.score_case(model, info, files, ood=ood, site_profile=a.site_profile, surface="handoff",
                        produced_by=C.produced_by(local_user()))  # the account running the command
    for path, r in zip(paths, case.images):
        row = {"file": path, "ok": r.ok, "sha256": r.sha256}
        row.update({"probability": r.probability, "decision": r.decision, "withheld": r.withheld,
                    "warnings": r.warnings} if r.ok else {"error": r.error})
        print(json.dumps(row), flush=True)
    for row in unread:
        print(json.dumps(row), flush=True)

    if a.pdf:
        from core.handoff.report import build_pdf

        Path(a.pdf).write_bytes(build_pdf(case, include_patient=a.include_patient))
        print(f"wrote {a.pdf}", file=sys.stderr)
    results = []
    if a.dicom_dir or a.send:
        from core.handoff.dicom_out import build_case

        results = build_case(case, include_patient=a.include_patient or a.send)
    if a.dicom_dir:
        out = Path(a.dicom_dir)
        out.mkdir(parents=True, exist_ok=True)
        for res in results:
            for name, data in res.files():
                (out / name).write_bytes(data)
        print(f"wrote {2 * len(results)} DICOM file(s) to {out}", file=sys.stderr)
    if a.send:
        from core.handoff.pacs import Pacs, PacsError

        try:
            sent = Pacs(node).store([ds for res in results for ds in res.datasets])
        except PacsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        print(f"sent {len(sent)} object(s) to {node}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
