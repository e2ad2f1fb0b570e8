"""`secondlook <verb> ...`: one console script for every command (`python -m core.<verb>` runs the same)."""
from __future__ import annotations

import importlib
import sys

VERBS = {
    "train": "core.train",
    "evaluate": "core.evaluate",
    "predict": "core.predict",
    "report": "core.report",
    "samples": "core.samples",
    "guard": "core.guard",
    "monitor": "core.monitor",
    "roles": "core.roles",
    "fields": "core.fields.__main__",
    "site": "core.site.__main__",
    "handoff": "core.handoff.__main__",
    "batch": "core.batch.__main__",
    "export": "core.export.__main__",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        known = ", ".join(VERBS)
        print(f"usage: secondlook <verb> [args]   verbs: {known}\n(`secondlook <verb> --help` for each)", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    verb, rest = argv[0], argv[1:]
    sys.argv = [f"secondlook {verb}", *rest]
    return int(importlib.import_module(VERBS[verb]).main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
