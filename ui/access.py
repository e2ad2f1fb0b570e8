"""The signed-in user of this session and what their role lets them do (core.users holds the rules).

With sign-in configured the user comes from the identity token's claims (`st.user`); in local single-user mode it
is the account running the app, with every role. Pages and controls a role may not use are not shown; every action
also calls `require`, on the server, before doing anything: a crafted rerun (widget state set by hand) meets the
same refusal, which goes into the audit log.
"""
from __future__ import annotations

import streamlit as st

from core import audit, users
from ui import deploy
from ui.deploy import auth_configured, signed_in

_KEY = "_access_user"


def current_user() -> users.User:
    """This session's user. The first time a signed-in user is seen in a session, a sign-in event is audited
    (with where the roles came from, so a least-privileged sign-in says why)."""
    if not auth_configured():
        return users.local_user()
    if not signed_in():
        return users.User(sub="anonymous", roles=(), source="default", note="not signed in")
    claims = dict(deploy.claims())
    cached = st.session_state.get(_KEY)
    if cached is not None and cached[0] == (claims.get("sub"), claims.get("email")):
        return cached[1]
    user = users.from_claims(claims)
    st.session_state[_KEY] = ((claims.get("sub"), claims.get("email")), user)
    note("sign_in", user, f"roles from {user.source}" + (f": {user.note}" if user.note else ""))
    return user


def note(kind: str, user: users.User, detail: str) -> None:
    """Audit an event (core.audit.EVENTS); a failing audit log never stops the action it records (the pages that
    score say when the log cannot be written)."""
    try:
        audit.event(kind, user, detail)
    except (audit.AuditError, ValueError):
        pass


def can(action: str) -> bool:
    return current_user().can(action)


def require(*actions: str) -> users.User:
    """The user, when they may do one of `actions`; else the refusal is audited, shown, and the run stops here."""
    user = current_user()
    if any(user.can(a) for a in actions):
        return user
    try:
        users.require(user, actions[0])
    except users.PermissionDenied as exc:
        note("refused", user, f"{'/'.join(actions)}: {exc}")
        st.error(f"Not allowed: {exc}.", icon=":material/block:")
        st.stop()
    return user


def sidebar_identity() -> None:
    """Who is signed in, with their role, and a way out (nothing in local single-user mode)."""
    if not auth_configured() or not signed_in():
        return
    u = current_user()
    st.sidebar.caption(f"Signed in as {u.label} · {u.role.replace('_', ' ')}")
    st.sidebar.button("Sign out", on_click=st.logout, key="access_sign_out", icon=":material/logout:")
