"""jhs-registry-login (roles/jupyterhub/files): ECR tokens from the local AWS endpoint into a Docker config.json.

The endpoint's GetAuthorizationToken answers user AWS and password <account>-auth-token, as ECR answers AWS
and a 12-hour token. With --role-arn the token is asked for as that role: shown on an endpoint that judges IAM (the
lab's), where only the role's trusted principal may assume it. What reaches the registries with these credentials is
tested in the lab (tests/lab/test_site.py: the ECR stand-in takes nothing else).
"""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time

from conftest import REGION, ROOT, local_endpoint
from lab.config import AWS_CREDENTIALS

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


def test_as_a_pull_role_the_token_is_that_roles_and_only_its_trusted_principal_gets_one(aws_env, tmp_path):
    """The manager's session assumes the pull-only role that trusts it and logs in as that role; another role's
    session is refused, and the old entry stays."""
    import boto3
    ec2_trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    with local_endpoint("--enforce-iam") as url:
        admin = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                 "aws_secret_access_key": AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        iam, sts = boto3.client("iam", **admin), boto3.client("sts", **admin)
        arns = {}
        for name in ("rl-manager", "rl-other"):
            arns[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ec2_trust))["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
        pull = iam.create_role(RoleName="rl-registry-pull", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": arns["rl-manager"]}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        iam.put_role_policy(RoleName="rl-registry-pull", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}))

        def env_of(role):   # the instance's credentials, as EC2 (the administrator here) hands them out
            creds = sts.assume_role(RoleArn=arns[role], RoleSessionName="i-0123")["Credentials"]
            return {**aws_env, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"], "AWS_SESSION_TOKEN": creds["SessionToken"]}
        cfg = tmp_path / "docker"
        proc = login(env_of("rl-manager"), cfg, "--role-arn", pull)
        assert proc.returncode == 0, proc.stderr
        assert "as arn:aws:sts::123456789012:assumed-role/rl-registry-pull/jhs-registry-login" in proc.stdout
        assert auth_of(cfg) == "AWS:123456789012-auth-token"
        before = (cfg / "config.json").read_bytes()
        refused = login(env_of("rl-other"), cfg, "--role-arn", pull)
        assert refused.returncode == 1 and "AccessDenied" in refused.stderr, refused.stderr
        assert (cfg / "config.json").read_bytes() == before
