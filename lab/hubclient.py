"""A small client of a lab hub's REST API, shared by the lab tests and the spawn benchmark.

It logs in through the hub's own login form (the lab's local authenticator) as an admin user, asks the
hub for an API token, then talks to /hub/api with it. The lab hub's certificate is self-signed, so TLS
verification is off here, and only here.
"""
from __future__ import annotations

import time

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify=False
    s.verify = False
    return s


class HubClient:
    def __init__(self, url: str, admin: str = "admin", password: str = "lab", timeout: float = 60):
        self.url = url.rstrip("/")
        self.timeout = timeout
        login = _session()
        login.get(self.url + "/hub/login", timeout=30)
        r = login.post(self.url + "/hub/login", timeout=30, allow_redirects=False,
                       data={"username": admin, "password": password, "_xsrf": login.cookies.get("_xsrf")})
        if r.status_code != 302:
            raise RuntimeError(f"login as {admin} at {self.url} answered {r.status_code}: {r.text[:300]}")
        r = login.post(self.url + f"/hub/api/users/{admin}/tokens", timeout=30, json={"note": "lab client"},
                       headers={"X-XSRFToken": login.cookies.get("_xsrf")})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"token request answered {r.status_code}: {r.text[:300]}")
        self.token = r.json()["token"]
        self.api = _session()
        self.api.headers["Authorization"] = f"token {self.token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return self.api.request(method, self.url + path, timeout=self.timeout, **kw)

    def create_user(self, user: str) -> None:
        r = self.call("POST", f"/hub/api/users/{user}")
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating {user} answered {r.status_code}: {r.text[:300]}")

    def delete_user(self, user: str) -> None:
        self.call("DELETE", f"/hub/api/users/{user}")

    def server(self, user: str) -> dict | None:
        """The user's default server model, or None when the user has none (stopped, failed)."""
        return self.call("GET", f"/hub/api/users/{user}").json()["servers"].get("")

    def request_start(self, user: str) -> None:
        r = self.call("POST", f"/hub/api/users/{user}/server")
        if r.status_code not in (201, 202):
            raise RuntimeError(f"starting {user}'s server answered {r.status_code}: {r.text[:300]}")

    def wait_ready(self, user: str, timeout: float = 300, interval: float = 2) -> dict:
        """Wait for the user's server to be ready; a spawn that fails (no server left) raises at once."""
        deadline = time.monotonic() + timeout
        while True:
            model = self.server(user)
            if model is None:
                raise RuntimeError(f"{user}'s server failed to start (the hub no longer lists it)")
            if model.get("ready"):
                return model
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user}'s server not ready after {timeout:.0f} s (pending: {model.get('pending')})")
            time.sleep(interval)

    def start(self, user: str, timeout: float = 300, interval: float = 2) -> dict:
        self.request_start(user)
        return self.wait_ready(user, timeout, interval)

    def stop(self, user: str, timeout: float = 120) -> None:
        r = self.call("DELETE", f"/hub/api/users/{user}/server")
        if r.status_code not in (202, 204):
            raise RuntimeError(f"stopping {user}'s server answered {r.status_code}: {r.text[:300]}")
        deadline = time.monotonic() + timeout
        while self.server(user) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user}'s server still listed {timeout:.0f} s after the stop request")
            time.sleep(1)
