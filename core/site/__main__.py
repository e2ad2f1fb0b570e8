"""Local validation from the command line: build a named site profile and print one JSON line.

    python -m core.site --task T [--model M] --manifest CSV --name NAME
    python -m core.site --task malaria --fields-session S1 --name iml-s1 [--model M ...] [--markdown]
    python -m core.site --list | --export NAME --task T [--model M] | --import FILE

The manifest is `path,label[,patient_id]` (paths relative to the CSV). The line holds the metrics at the current
(shipped) operating point, the proposed site threshold and the metrics there; the profile is saved in the site
database (`SECONDLOOK_SITES`, default `sites.sqlite` in `SECONDLOOK_HOME`, see core.config.data_file). Bad input exits 2 with a
message naming the row or file, and nothing is saved.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from core.site import build, cases, profiles

    p = argparse.ArgumentParser(prog="python -m core.site", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task")
    p.add_argument("--model", action="append", help="model id (default: the task's default model); repeat with --fields-session")
    p.add_argument("--manifest")
    p.add_argument("--fields-session", action="append", help="malaria only: cells of these malaria_fields sessions (S1 = test)")
    p.add_argument("--name")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--markdown", action="store_true", help="with --fields-session: also print docs/evaluation.md's table (stderr)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--export")
    p.add_argument("--import", dest="import_file")
    a = p.parse_args(argv)
    try:
        if a.list:
            for prof in profiles.list_profiles(a.task):
                print(json.dumps({"site": prof.name, "task": prof.task, "model": prof.model_id, "n": prof.n,
                                  "threshold": prof.threshold, "created_at": prof.created_at}))
            return 0
        if a.import_file:
            with open(a.import_file, "rb") as fh:
                prof = profiles.import_json(fh.read(), replace=True)
            print(json.dumps({"imported": prof.name, "task": prof.task, "model": prof.model_id}))
            return 0
        if not a.task:
            p.error("--task is required")
        from core.registry import get_task
        from core.models.selection import default_model

        task = get_task(a.task)
        models = a.model or [default_model(a.task)]
        for m in models:
            task.model(m)
        if a.export:
            sys.stdout.write(profiles.export_json(profiles.get(a.export, a.task, a.model[0] if a.model else None)).decode() + "\n")
            return 0
        if not a.name or bool(a.manifest) == bool(a.fields_session):
            p.error("give --name and exactly one of --manifest or --fields-session")
        if a.fields_session:
            from core.site.fields import field_study

            if a.task != "malaria":
                p.error("--fields-session is for the malaria task (cells cut from smear fields)")
            from core.site.fields import markdown_table

            rows = field_study(models, a.name, tuple(a.fields_session), n_boot=a.n_boot)
            for row in rows:
                print(json.dumps(profiles._clean(row)), flush=True)
            if a.markdown:
                print(markdown_table(rows), file=sys.stderr)
            return 0
        if len(models) != 1:
            p.error("one --model with --manifest")
        site_cases = cases.from_manifest(a.manifest, task)
        prof = build.build(a.name, a.task, models[0], site_cases, n_boot=a.n_boot)
        print(json.dumps(profiles._clean(build.summary_line(prof))), flush=True)
        return 0
    except KeyError as exc:
        p.error(str(exc.args[0]))
    except (cases.SiteInputError, profiles.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
