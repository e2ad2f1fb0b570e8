"""Who can reach the app: without sign-in it serves this computer only.

Sign-in is configured by an `[auth]` block in `.streamlit/secrets.toml`. Without it the app runs in local
single-user mode: `.streamlit/config.toml` makes Streamlit listen on localhost, and every page says so in a
small banner. Started on any other address (`--server.address 0.0.0.0`, or with no address, which Streamlit
takes as every network interface) without sign-in, every page shows one line on how to configure sign-in and
nothing else. No imports from other ui modules (app.py calls `guard()` before anything else is drawn).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import streamlit as st

LOCAL_BANNER = ":material/lock: Local single-user mode: no sign-in; only this computer can reach SecondLook."
REFUSAL = ("SecondLook is listening on {where} without sign-in, so it serves nothing: add an `[auth]` block to "
           "`.streamlit/secrets.toml` (README, \"Deploying for a team\"), or start it on localhost.")


def local_address(addr: str | None) -> bool:
    """True for an address only this computer can reach: `localhost` or a loopback IP (127.0.0.0/8, ::1).

    An empty or unset address is not local: Streamlit then listens on every network interface."""
    a = (addr or "").strip().lower()
    if a.startswith("[") and a.endswith("]"):
        a = a[1:-1]
    if a == "localhost":
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False  # "" (every interface) or a host name, which may resolve to any interface


def auth_configured() -> bool:
    """An `[auth]` table with settings in the app's secrets. A missing or unreadable secrets file means no."""
    try:
        auth = st.secrets["auth"] if "auth" in st.secrets else None
    except Exception:  # no secrets file, a TOML syntax error, an unreadable file: fail closed
        return False
    return isinstance(auth, Mapping) and len(auth) > 0


def signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # no user information (e.g. no auth configured): nobody is signed in
        return False


def guard() -> None:
    """Call right after st.set_page_config: with sign-in configured, nothing but the sign-in page until the user has
    signed in; without it, the local-mode banner, or the one refusal line and st.stop()."""
    if auth_configured():
        if not signed_in():
            st.title("SecondLook")
            st.markdown("Sign in to continue.")
            st.button("Sign in", on_click=st.login, key="deploy_sign_in", icon=":material/login:")
            st.stop()
        return
    addr = st.get_option("server.address")
    if local_address(addr):
        st.caption(LOCAL_BANNER)
        return
    where = f"`{addr}`" if addr else "every network interface"
    st.error(REFUSAL.format(where=where), icon=":material/block:")
    st.stop()
