"""A real OpenID Connect provider for tests (tests/oidc/provider.mjs, npm `oidc-provider`): config in a temp dir, a
free localhost port, started and ALWAYS stopped.

`oidc_provider(tmp, redirect_uris)` is a context manager yielding an `OidcProvider`; `write_secrets` writes the
Streamlit `[auth]` block that points the app at it; `signed_user_cookie` makes a `_streamlit_user` cookie the way
Streamlit signs it (for forged-cookie tests). Without Node or its packages the tests skip locally and fail in CI.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.browser import free_port, stop_process
from tests.conftest import IN_CI

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
HOST = "localhost"  # one host name for the app URL, its redirect_uri and the provider: cookies are per host
CLIENT_ID = "secondlook"
CLIENT_SECRET = "secondlook-test-client-secret"
START_TIMEOUT = 30.0
SCOPES = "openid email profile roles"


@dataclass(frozen=True)
class IdpUser:
    email: str
    password: str
    sub: str
    name: str
    roles: list[str] | None = field(default=None)  # None: the ID token carries no roles claim at all


CLINICIAN = IdpUser("clinician@example.org", "clinician-pw-1", "u-clinician", "Clara Clinician", ["clinician"])
TECHNICIAN = IdpUser("technician@example.org", "technician-pw-1", "u-technician", "Theo Technician", ["technician"])
ADMIN = IdpUser("admin@example.org", "admin-pw-1", "u-admin", "Ada Admin", ["site_admin"])
AUDITOR = IdpUser("auditor@example.org", "auditor-pw-1", "u-auditor", "Audrey Auditor", ["auditor"])
NOROLES = IdpUser("noroles@example.org", "noroles-pw-1", "u-noroles", "Nora Noroles", None)
USERS = (CLINICIAN, TECHNICIAN, ADMIN, AUDITOR, NOROLES)

_npm_tried = False


def _unavailable(msg: str) -> None:
    if IN_CI:
        pytest.fail("CI must run the OIDC provider: " + msg)
    pytest.skip(msg)


def require_provider() -> str:
    """Node's path once tests/oidc/node_modules is there (`npm ci` quietly on first use); skip/fail otherwise."""
    global _npm_tried
    node = shutil.which("node")
    if not node:
        _unavailable("Node.js is not installed (needed for tests/oidc/provider.mjs)")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir() and not _npm_tried:
        _npm_tried = True
        npm = shutil.which("npm")
        if npm:
            subprocess.run([npm, "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund", "--silent"],
                           check=False, capture_output=True, timeout=300)
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable(f"`npm ci --prefix {OIDC_DIR} --no-audit --no-fund` did not install oidc-provider")
    return node


@dataclass
class OidcProvider:
    port: int
    log: Path

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def metadata_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def get(self, path: str) -> tuple[int, dict, bytes]:
        """(status, headers, body) of a GET, redirects not followed: the tests look at where the provider sends."""
        return _request(self.issuer + path)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    import urllib.error

    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _config(port: int, redirect_uris: list[str], id_token_ttl: int) -> dict:
    return {
        "port": port, "issuer": f"http://{HOST}:{port}", "id_token_ttl": id_token_ttl,
        "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris},
        "users": [{"username": u.email, "password": u.password, "sub": u.sub, "name": u.name,
                   **({"roles": u.roles} if u.roles is not None else {})} for u in USERS],
    }


@contextlib.contextmanager
def oidc_provider(tmp: Path, redirect_uris: list[str], id_token_ttl: int = 3600,
                  port: int | None = None) -> Iterator[OidcProvider]:
    """Start the provider on a free localhost port; yield once its discovery document answers; always stop it."""
    node = require_provider()
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cfg = tmp / "oidc.json"
    cfg.write_text(json.dumps(_config(port, redirect_uris, id_token_ttl), indent=1))
    log = tmp / "oidc.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([node, str(OIDC_DIR / "provider.mjs"), str(cfg)], stdout=logf,
                                stderr=subprocess.STDOUT, cwd=OIDC_DIR)
    server = OidcProvider(port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if server.get("/.well-known/openid-configuration")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OIDC provider did not start within {START_TIMEOUT:g} s: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        stop_process(proc, 10)


def app_origin(app_port: int) -> str:
    return f"http://{HOST}:{app_port}"


def write_secrets(folder: Path, app_port: int, provider_port: int, cookie_secret: str | None = None) -> Path:
    """A secrets.toml (outside the repository) whose [auth] block signs the app in against the test provider."""
    folder.mkdir(parents=True, exist_ok=True)
    cookie_secret = cookie_secret or secrets.token_hex(32)
    path = folder / "secrets.toml"
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "{app_origin(app_port)}/oauth2callback"\n'
        f'cookie_secret = "{cookie_secret}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "http://{HOST}:{provider_port}/.well-known/openid-configuration"\n'
        f'client_kwargs = {{ scope = "{SCOPES}" }}\n')
    return path


def cookie_secret_of(secrets_path: Path) -> str:
    import tomllib

    return tomllib.loads(secrets_path.read_text())["auth"]["cookie_secret"]


def signed_user_cookie(cookie_secret: str, claims: dict, origin: str) -> str:
    """The `_streamlit_user` cookie value Streamlit 1.67 sets after a sign-in (starlette_auth_routes._set_auth_cookie):
    the JSON of the ID token's claims + origin, is_logged_in and provider, signed by itsdangerous'
    URLSafeTimedSerializer with the cookie secret and the cookie name as salt."""
    from itsdangerous import URLSafeTimedSerializer

    payload = dict(claims, origin=origin, is_logged_in=True, provider="default")
    return URLSafeTimedSerializer(cookie_secret, salt="_streamlit_user").dumps(json.dumps(payload))


def id_claims(user: IdpUser, issuer: str, exp: int, iat: int | None = None) -> dict:
    """The claims our provider puts into an ID token for `user` (for hand-made cookies)."""
    iat = iat if iat is not None else exp - 3600
    out = {"sub": user.sub, "email": user.email, "email_verified": True, "name": user.name, "iss": issuer,
           "aud": CLIENT_ID, "iat": iat, "exp": exp, "auth_time": iat, "nonce": secrets.token_urlsafe(8)}
    if user.roles is not None:
        out["roles"] = list(user.roles)
    return out


# ------------------------------------------------------------------ the app signed in against the provider (browser)


@dataclass
class SignInStack:
    url: str  # the app as the browser must open it: http://localhost:<port>, the host of its redirect_uri
    idp: OidcProvider
    secrets: Path
    cookie_secret: str
    log: Path


@contextlib.contextmanager
def signin_stack(tmp: Path, id_token_ttl: int = 3600, provider_up: bool = True, timeout_s: float = 90.0,
                 env: dict | None = None) -> Iterator[SignInStack]:
    """The provider (or, with `provider_up=False`, a port where nothing listens) and `streamlit run app.py` with an
    [auth] block pointing at it (`--secrets.files`, outside the repository); both always stopped."""
    from benchmarks.browser import streamlit_app

    app_port = free_port()
    idp_port = free_port()
    while idp_port == app_port:
        idp_port = free_port()
    with contextlib.ExitStack() as stack:
        if provider_up:
            idp = stack.enter_context(oidc_provider(tmp / "oidc", [f"{app_origin(app_port)}/oauth2callback"],
                                                    id_token_ttl, port=idp_port))
        else:
            idp = OidcProvider(idp_port, tmp / "no-provider.log")
        path = write_secrets(tmp, app_port, idp.port)
        log = tmp / "streamlit.log"
        stack.enter_context(streamlit_app(log, timeout_s, env=env, args=["--secrets.files", str(path)], port=app_port))
        yield SignInStack(app_origin(app_port), idp, path, cookie_secret_of(path), log)


def sign_in(page, stack: SignInStack, user: IdpUser, password: str | None = None, timeout_ms: float = 60_000) -> None:
    """From the app's sign-in page: "Sign in" -> the provider's own form -> e-mail and password -> submit. Returns
    after the submit (a right password then leads back to the app, a wrong one stays on the form)."""
    import re

    page.get_by_role("button", name="Sign in").click(timeout=timeout_ms)
    page.wait_for_url(re.compile(re.escape(stack.idp.issuer) + r"/interaction/"), timeout=timeout_ms)
    page.get_by_label("E-mail").fill(user.email)
    page.get_by_label("Password").fill(user.password if password is None else password)
    page.get_by_role("button", name="Sign in").click(timeout=timeout_ms)


def signed_in_caption(page, timeout_ms: float = 60_000) -> str:
    """The sidebar's "Signed in as ..." caption, once shown."""
    caption = page.locator('[data-testid="stSidebar"]').get_by_text("Signed in as").first
    caption.wait_for(timeout=timeout_ms)
    return caption.inner_text().strip()


def nav_links(page) -> list[str]:
    """The sidebar navigation's link texts (each link's last line: the first is the icon's ligature name)."""
    links = page.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
    return [links.nth(i).inner_text().strip().split("\n")[-1].strip() for i in range(links.count())]


def user_cookie(context, cookie_secret: str) -> dict | None:
    """The claims in the browser's `_streamlit_user` cookie (None without one): what the app's st.user shows."""
    from itsdangerous import URLSafeTimedSerializer

    value = next((c["value"] for c in context.cookies() if c["name"] == "_streamlit_user"), None)
    if value is None:
        return None
    return json.loads(URLSafeTimedSerializer(cookie_secret, salt="_streamlit_user").loads(value))
