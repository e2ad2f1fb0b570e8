"""The local role table, for identity providers that send no role claim (a site admin edits it).

    python -m core.roles grant clinician@hospital.org clinician [--by admin@hospital.org]
    python -m core.roles revoke clinician@hospital.org [clinician]
    python -m core.roles list

A user is looked up by the token's subject, then by the (verified) e-mail. A role claim in the token wins over the
table. Roles: clinician, technician, site_admin, auditor. The table is `users.sqlite` in `SECONDLOOK_HOME`
(`SECONDLOOK_USERS` names another file).
"""
from __future__ import annotations

import argparse
import json
import sys

from core import users


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grant", help="give a user a role")
    g.add_argument("who", help="e-mail address or token subject")
    g.add_argument("role", choices=users.WORK_ROLES)
    g.add_argument("--by", default=None, help="who grants it (default: this computer's account)")
    r = sub.add_parser("revoke", help="take a role (or every role) away")
    r.add_argument("who")
    r.add_argument("role", nargs="?", choices=users.WORK_ROLES)
    sub.add_parser("list", help="the table as JSON lines")
    a = p.parse_args(argv)
    try:
        if a.cmd == "grant":
            users.grant(a.who, a.role, by=a.by or users.local_user().label)
            print(f"{a.who}: {a.role} granted ({users.db_path()})")
        elif a.cmd == "revoke":
            n = users.revoke(a.who, a.role)
            print(f"{a.who}: {n} role(s) revoked")
        else:
            for row in users.table():
                print(json.dumps(row))
    except ValueError as exc:
        print(f"roles: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
