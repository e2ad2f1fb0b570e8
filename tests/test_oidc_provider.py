"""The test identity provider itself, over plain HTTP: what the sign-in browser tests rely on must hold here first
(discovery, keys, a login form that checks the password, the claims in the ID token, a configurable token life)."""
from __future__ import annotations

import base64
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.oidc_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    CLINICIAN,
    NOROLES,
    SCOPES,
    USERS,
    IdpUser,
    oidc_provider,
)

REDIRECT = "http://localhost:9/oauth2callback"  # never followed: the test reads the code from the Location header


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with oidc_provider(tmp_path_factory.mktemp("oidc"), [REDIRECT]) as p:
        yield p


class _Browser:
    """Cookies kept, redirects not followed: each hop of the code flow is looked at."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect)

    def go(self, url: str, form: dict | None = None, headers: dict | None = None) -> tuple[int, dict, str]:
        url = urllib.parse.urljoin(self.issuer, url)
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(url, data=data, headers=headers or {}), timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()


def _start(provider) -> tuple[_Browser, str]:
    """An authorization request as Streamlit sends it (prompt=select_account); returns the login form's action."""
    b = _Browser(provider.issuer)
    query = urllib.parse.urlencode({"client_id": CLIENT_ID, "response_type": "code", "scope": SCOPES,
                                    "redirect_uri": REDIRECT, "state": "st", "nonce": "nn", "prompt": "select_account"})
    status, headers, _ = b.go(f"/auth?{query}")
    assert status == 303 and headers["Location"].startswith("/interaction/"), (status, headers)
    status, _, html = b.go(headers["Location"])
    assert status == 200 and 'type="password"' in html
    return b, re.search(r'action="([^"]+)"', html).group(1)


def _sign_in(provider, user: IdpUser, password: str | None = None) -> tuple[_Browser, tuple[int, dict, str]]:
    b, action = _start(provider)
    return b, b.go(action, {"login": user.email, "password": user.password if password is None else password})


def _id_token(provider, user: IdpUser) -> dict:
    """The whole code flow: login form, resume, code, token endpoint; the ID token's verified claims."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    b, (status, headers, _) = _sign_in(provider, user)
    assert status == 303, status
    for _ in range(3):  # interaction -> /auth/<uid> (resume) -> redirect_uri?code=...
        if headers["Location"].startswith(REDIRECT):
            break
        status, headers, _ = b.go(headers["Location"])
    q = urllib.parse.parse_qs(urllib.parse.urlparse(headers["Location"]).query)
    assert q.get("state") == ["st"] and "code" in q, headers["Location"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT}
    status, _, body = b.go("/token", form, headers={"Authorization": f"Basic {basic}"})
    assert status == 200, body
    meta = json.loads(provider.get("/.well-known/openid-configuration")[2])
    keys = KeySet.import_key_set(json.loads(provider.get(urllib.parse.urlparse(meta["jwks_uri"]).path)[2]))
    return jwt.decode(json.loads(body)["id_token"], keys).claims


def test_discovery_document(provider):
    status, _, body = provider.get("/.well-known/openid-configuration")
    meta = json.loads(body)
    assert status == 200 and meta["issuer"] == provider.issuer
    assert {"openid", "email", "profile", "roles"} <= set(meta["scopes_supported"])
    assert {"sub", "email", "email_verified", "name", "roles"} <= set(meta["claims_supported"])
    assert meta["authorization_endpoint"].startswith(provider.issuer) and meta["end_session_endpoint"]
    assert "authorization_code" in meta["grant_types_supported"]


def test_jwks_has_a_signing_key(provider):
    meta = json.loads(provider.get("/.well-known/openid-configuration")[2])
    keys = json.loads(provider.get(urllib.parse.urlparse(meta["jwks_uri"]).path)[2])["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA"
    assert keys[0]["alg"] in meta["id_token_signing_alg_values_supported"]
    assert "d" not in keys[0]  # public part only


@pytest.mark.parametrize("password", ["wrong", "", CLINICIAN.password.upper()])
def test_the_login_form_rejects_a_wrong_password(provider, password):
    _, (status, headers, html) = _sign_in(provider, CLINICIAN, password)
    assert status == 401 and "Location" not in headers
    assert "Wrong e-mail or password." in html and 'type="password"' in html


def test_an_unknown_user_is_rejected(provider):
    _, (status, _, html) = _sign_in(provider, IdpUser("nobody@example.org", "x", "u-x", "X"))
    assert status == 401 and "Wrong e-mail or password." in html


@pytest.mark.parametrize("user", USERS, ids=lambda u: u.sub)
def test_the_id_token_carries_the_users_claims(provider, user):
    claims = _id_token(provider, user)
    assert claims["iss"] == provider.issuer and claims["aud"] == CLIENT_ID and claims["nonce"] == "nn"
    assert (claims["sub"], claims["email"], claims["email_verified"], claims["name"]) == (
        user.sub, user.email, True, user.name)
    if user is NOROLES:
        assert "roles" not in claims
    else:
        assert claims["roles"] == user.roles
    assert claims["exp"] - claims["iat"] == 3600


def test_the_id_token_lifetime_is_set_at_start(tmp_path):
    with oidc_provider(tmp_path, [REDIRECT], id_token_ttl=3) as short:
        claims = _id_token(short, CLINICIAN)
    assert claims["exp"] - claims["iat"] == 3
