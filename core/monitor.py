"""Drift of a batch run's scores against the model's validation scores; prints one JSON line.

    python -m core.monitor --task malaria --scores results.csv          # a core.batch output (CSV or Parquet)
    python -m core.monitor --task malaria --model secondlook_long --scores results.parquet
    python -m core.monitor --study [--task malaria]                     # the numbers the alarm level was chosen on
    python -m core.monitor --agreement [--task T] [--model M]           # AI-reader agreement from the confirmations

The line holds "psi" (population stability index over the validation deciles), "ks_p" (two-sample KS p-value) and
"alarm" (true when PSI >= the alarm level: the scores come from a population unlike validation), with n (assessed
scores), n_withheld (rows without a probability: counted, not used), the flag rate at the model's threshold, the
reference n and the alarm level. Fewer than 100 scores: "alarm": false and "reason": "too few to judge drift ...".
The model is --model, else the one the file names, else the task's default. Exit 2 on unusable input.

--agreement prints one JSON line per task, model, site profile and what was confirmed (images, field cells): results
readers confirmed (each counted once, at its latest call), judged (SecondLook had made a decision), agreed, the
agreement rate and the sentence the Monitoring page shows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.monitoring import agreement_lines, agreement_text, alarm_study, batch_file_report, confirmation_frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="the task the scores are of")
    p.add_argument("--model", help="the model that scored them (default: the one the file names, else the task's default)")
    p.add_argument("--scores", type=Path, help="a core.batch output (.csv or .parquet)")
    p.add_argument("--study", action="store_true",
                   help="measure the alarm level's evidence: validation resampled by patient, another lab's training-"
                        "session cells (needs the datasets and TensorFlow; a few minutes)")
    p.add_argument("--agreement", action="store_true", help="AI-reader agreement from the readers' confirmations")
    a = p.parse_args(argv)
    if a.agreement:
        lines = agreement_lines(confirmation_frame())
        for line in lines.to_dict("records"):
            if (a.task and line["task"] != a.task) or (a.model and line["model_id"] != a.model):
                continue
            rate = line["agreement_rate"]
            print(json.dumps({**line, "agreement_rate": None if rate != rate else rate, "text": agreement_text(line)}, default=float))
        return 0
    if a.study:
        print(json.dumps(alarm_study(a.task or "malaria"), default=float))
        return 0
    if not a.task or not a.scores:
        p.error("--task and --scores are required (or --study)")
    try:
        report = batch_file_report(a.task, a.scores, a.model)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
