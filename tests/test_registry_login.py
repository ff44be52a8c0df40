"""jhs-registry-login (roles/jupyterhub/files): ECR tokens from the local AWS endpoint into a Docker config.json.

The endpoint's GetAuthorizationToken answers user AWS and password <account>-auth-token, as ECR answers AWS
and a 12-hour token. What reaches the registries with these credentials is tested in the lab
(tests/lab/test_site.py: the ECR stand-in takes nothing else).
"""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time

from conftest import REGION, ROOT

SCRIPT = ROOT / "roles" / "jupyterhub" / "files" / "jhs-registry-login"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def login(env, config_dir, *extra, timeout=60):
    return subprocess.run([sys.executable, str(SCRIPT), "--registry", REGISTRY, "--config-dir", str(config_dir),
                           "--region", REGION, "--endpoint-url", env["AWS_ENDPOINT_URL"], *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)


def auth_of(config_dir, registry=REGISTRY):
    entry = json.loads((config_dir / "config.json").read_text())["auths"][registry]
    return base64.b64decode(entry["auth"]).decode()


def test_writes_the_token_as_the_registry_entry_0600_keeping_others(aws_env, tmp_path):
    cfg = tmp_path / "docker"
    cfg.mkdir(mode=0o700)
    (cfg / "config.json").write_text(json.dumps({"auths": {"other.example:5000": {"auth": "b3RoZXI6eA=="}},
                                                 "credHelpers": {"x.example": "pass"}}))
    proc = login(aws_env, cfg)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "refreshed"
    assert auth_of(cfg) == "AWS:123456789012-auth-token"
    config = json.loads((cfg / "config.json").read_text())
    assert config["auths"]["other.example:5000"] == {"auth": "b3RoZXI6eA=="}
    assert config["credHelpers"] == {"x.example": "pass"}
    assert stat.S_IMODE((cfg / "config.json").stat().st_mode) == 0o600
    assert "auth-token" not in proc.stdout + proc.stderr          # the token is never printed
    assert [p.name for p in cfg.iterdir()] == ["config.json"]     # no temporary file left


def test_fresh_credentials_are_left_alone_and_old_ones_renewed(aws_env, tmp_path):
    cfg = tmp_path / "docker"
    assert login(aws_env, cfg, "--max-age", "600").stdout.splitlines()[-1] == "refreshed"   # none yet
    before = (cfg / "config.json").stat().st_mtime_ns
    again = login(aws_env, cfg, "--max-age", "600")
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == "fresh"
    assert (cfg / "config.json").stat().st_mtime_ns == before
    old = time.time() - 700
    os.utime(cfg / "config.json", (old, old))
    assert login(aws_env, cfg, "--max-age", "600").stdout.splitlines()[-1] == "refreshed"
    assert (cfg / "config.json").stat().st_mtime > old + 600
    # an entry for another registry only is not this registry's credentials
    (cfg / "config.json").write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}}))
    assert login(aws_env, cfg, "--max-age", "600").stdout.splitlines()[-1] == "refreshed"


def test_keeps_running_and_refreshes_credentials_older_than_every(aws_env, tmp_path):
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text("{}")
    old = time.time() - 7200
    os.utime(cfg / "config.json", (old, old))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--registry", REGISTRY, "--config-dir", str(cfg),
                             "--region", REGION, "--endpoint-url", aws_env["AWS_ENDPOINT_URL"], "--every", "3600"],
                            env=aws_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and (cfg / "config.json").stat().st_mtime < old + 1:
            time.sleep(0.2)
        assert auth_of(cfg) == "AWS:123456789012-auth-token"
        assert proc.poll() is None                                # still running, to refresh again later
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert f"refreshed the credentials of {REGISTRY}" in out and "auth-token" not in out


def test_an_unreachable_endpoint_fails_the_one_shot_and_is_retried_by_the_loop(aws_env, tmp_path):
    cfg = tmp_path / "docker"
    env = {**aws_env, "AWS_MAX_ATTEMPTS": "1"}
    bad = ["--endpoint-url", "http://127.0.0.1:9"]     # nothing listens on the discard port
    one = subprocess.run([sys.executable, str(SCRIPT), "--registry", REGISTRY, "--config-dir", str(cfg),
                          "--region", REGION, *bad], env=env, capture_output=True, text=True, timeout=60)
    assert one.returncode != 0 and "EndpointConnectionError" in one.stderr
    assert not (cfg / "config.json").exists()
    loop = subprocess.Popen([sys.executable, str(SCRIPT), "--registry", REGISTRY, "--config-dir", str(cfg),
                             "--region", REGION, *bad, "--every", "3600"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(5)
    assert loop.poll() is None                                    # a failed refresh does not stop it
    loop.terminate()
    out = loop.communicate(timeout=10)[0]
    assert "failed (EndpointConnectionError" in out and "retrying in 30 s" in out
