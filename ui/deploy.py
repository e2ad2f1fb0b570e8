"""Who can reach the app: without sign-in it serves this computer only.

Sign-in is configured by an `[auth]` block in `.streamlit/secrets.toml`. Without it the app runs in local
single-user mode: `.streamlit/config.toml` makes Streamlit listen on localhost, and every page says so in a
small banner. Started on any other address (`--server.address 0.0.0.0`, or with no address, which Streamlit
takes as every network interface) without sign-in, every page shows one line on how to configure sign-in and
nothing else. No imports from other ui modules (app.py calls `guard()` before anything else is drawn).
"""
from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
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


NEEDED = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
SESSION_HOURS = 12.0  # a session never outlives a long clinical shift, whatever the token says
EXPIRED = "Your session has expired. Sign in again to continue."


def _provider() -> tuple[str | None, Mapping]:
    """(the provider name st.login needs: None for a flat `[auth]`, else the one `[auth.<name>]`), its settings."""
    auth = st.secrets["auth"]
    if "client_id" in auth or "server_metadata_url" in auth:
        return None, auth
    named = [k for k, v in auth.items() if isinstance(v, Mapping)]
    return (named[0], {**{k: v for k, v in auth.items() if not isinstance(v, Mapping)}, **auth[named[0]]}) \
        if len(named) == 1 else (None, auth)


def config_problem() -> str | None:
    """What is missing from `[auth]` (so sign-in could not work), else None."""
    try:
        _, conf = _provider()
    except Exception as exc:  # unreadable secrets
        return f"the `[auth]` settings cannot be read ({exc})"
    missing = [k for k in NEEDED if not str(conf.get(k) or "").strip()]
    return f"the `[auth]` block lacks {', '.join(missing)}" if missing else None


@st.cache_data(ttl=15, show_spinner=False)
def _reachable(url: str) -> str | None:
    """Why the provider's discovery document cannot be read, else None (checked at most every 15 s)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            doc = json.loads(r.read().decode("utf-8"))
        if not doc.get("authorization_endpoint"):
            return "its discovery document has no authorization endpoint"
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def session_expired(claims: Mapping, now: float | None = None) -> bool:
    """The identity token's `exp` has passed, or the session is older than SECONDLOOK_SESSION_HOURS (default 12)."""
    now = time.time() if now is None else now
    try:
        hours = float(os.environ.get("SECONDLOOK_SESSION_HOURS", SESSION_HOURS))
    except ValueError:
        hours = SESSION_HOURS
    exp, iat = claims.get("exp"), claims.get("iat") or claims.get("auth_time")
    try:
        if exp is not None and float(exp) <= now:
            return True
        return iat is not None and float(iat) + hours * 3600 <= now
    except (TypeError, ValueError):
        return True  # a garbled time claim is not a session we can vouch for


def _sign_in_page() -> None:
    st.title("SecondLook")
    problem = config_problem()
    if problem is None:
        provider, conf = _provider()
        down = _reachable(str(conf["server_metadata_url"]))
        if down:
            problem = f"the sign-in service at `{conf['server_metadata_url']}` cannot be reached ({down})"
    if problem:
        st.error(f"Sign-in is not available: {problem}. Nothing is served until the sign-in service works; "
                 "tell your IT team.", icon=":material/block:")
        st.stop()
    st.markdown("Sign in to continue.")
    st.button("Sign in", on_click=st.login, args=(provider,) if provider else (), key="deploy_sign_in",
              icon=":material/login:")
    st.stop()


def claims() -> Mapping:
    """The signed-in user's identity-token claims (empty without a signed-in user)."""
    try:
        return st.user.to_dict()
    except Exception:
        return {}


def signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # no user information (e.g. no auth configured): nobody is signed in
        return False


def guard() -> None:
    """Call right after st.set_page_config: with sign-in configured, nothing but the sign-in page until the user has
    signed in (a clear message instead when the provider is misconfigured or down; a sign-in-again page when the
    session expired); without it, the local-mode banner, or the one refusal line and st.stop()."""
    if auth_configured():
        if not signed_in():
            _sign_in_page()
        if session_expired(claims()):
            st.title("SecondLook")
            st.warning(EXPIRED, icon=":material/timer_off:")
            st.button("Sign in", on_click=st.logout, key="deploy_sign_in_again", icon=":material/login:")
            st.stop()
        return
    addr = st.get_option("server.address")
    if local_address(addr):
        st.caption(LOCAL_BANNER)
        return
    where = f"`{addr}`" if addr else "every network interface"
    st.error(REFUSAL.format(where=where), icon=":material/block:")
    st.stop()
