"""aws_cluster preflight: each bad setting is rejected with its own message before any AWS call.

Every case runs the play of playbooks/provision.yml with aws_endpoint_url pointing at a recorder on loopback that
answers every request with AccessDenied and counts it. The bad inputs run in one ansible-playbook (the same play
over one host per case, tests/aws_cluster_preflight.yml: one Ansible start instead of one per case). A rejected
input must fail in a Preflight task with its message and leave the recorder at zero requests; the control case
(valid settings, playbooks/provision.yml itself) must get past preflight and reach the recorder, which proves the
recorder would have seen a call.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from conftest import ROOT, VENV_BIN, git_repo, host_failure, task_sections
from test_provision import inventory

VALID = {
    "cluster_name": "pre-flight",
    "aws_region": "eu-west-1",
    "repo_url": git_repo()[0],        # provisioning resolves repo_version in it (git ls-remote)
    "repo_version": "main",
    "aws_cluster_ami_id": "ami-1e749f67",
}

# (id, overrides, the message the preflight must print)
BAD_INPUTS = [
    ("cluster-name-format", {"cluster_name": "Bad_Name"}, "cluster_name=Bad_Name: use 3-28 characters"),
    ("unknown-region", {"aws_region": "mars-north-1"}, "aws_region=mars-north-1 is not a known AWS region"),
    ("log-kms-key", {"aws_cluster_log_kms_key_arn": "my-key"}, "aws_cluster_log_kms_key_arn=my-key: leave it empty"),
    ("outbound-proxy", {"aws_cluster_worker_boot_vars": {"outbound_proxy": {"http": "proxy.corp:3128"}}},
     "aws_cluster_worker_boot_vars: outbound_proxy.http=proxy.corp:3128: a proxy URL http://host:port"),
    ("awslogs-without-group", {"aws_cluster_logs": False, "docker_engine_log_driver": "awslogs"},
     "docker_engine_log_driver=awslogs (the manager's, or the workers' in aws_cluster_worker_boot_vars) with aws_cluster_logs=false"),
    ("endpoint-url-scheme", {"aws_endpoint_url": "ftp://127.0.0.1:1"}, "aws_endpoint_url=ftp://127.0.0.1:1: leave it empty"),
    ("repo-url-missing", {"repo_url": ""}, "both are required; repo_url is a git URL"),
    ("repo-version-space", {"repo_version": "my branch"}, "repo_version=my branch: both are required"),
    ("vpc-cidr-invalid", {"aws_cluster_vpc_cidr": "10.10.0.0/33"}, "aws_cluster_vpc_cidr=10.10.0.0/33: give an IPv4 network"),
    ("vpc-cidr-too-big", {"aws_cluster_vpc_cidr": "10.0.0.0/8"}, "aws_cluster_vpc_cidr=10.0.0.0/8: give an IPv4 network"),
    ("subnet-cidr-invalid", {"aws_cluster_public_subnet_cidrs": ["10.10.1.300/24", "10.10.16.0/20"]},
     "not valid IPv4 CIDRs: 10.10.1.300/24"),
    ("subnet-outside-vpc", {"aws_cluster_public_subnet_cidrs": ["10.20.0.0/24", "10.10.16.0/20"]},
     "outside aws_cluster_vpc_cidr=10.10.0.0/16: 10.20.0.0/24"),
    ("subnets-overlap", {"aws_cluster_public_subnet_cidrs": ["10.10.0.0/20", "10.10.8.0/24"]},
     "overlapping subnets: 10.10.0.0/20/10.10.8.0/24"),
    ("subnet-in-reserved-range", {"aws_cluster_reserved_cidrs": ["10.10.255.0/24"],
                                  "aws_cluster_private_subnet_cidrs": ["10.10.128.0/20", "10.10.240.0/20"]},
     "no subnet may overlap them; overlapping: 10.10.240.0/20/10.10.255.0/24"),
    ("subnet-count-mismatch", {"aws_cluster_public_subnet_cidrs": ["10.10.0.0/20", "10.10.16.0/20", "10.10.32.0/20"]},
     "aws_cluster_public_subnet_cidrs (3) and aws_cluster_private_subnet_cidrs\n(2) need the same number"),
    ("zones-count-mismatch", {"aws_cluster_availability_zones": ["eu-west-1a"]}, "(1 given)"),
    ("hub-ingress-invalid", {"aws_cluster_hub_ingress_cidrs": ["everyone"]}, "aws_cluster_hub_ingress_cidrs=everyone: give at least one"),
    ("ssh-cidr-invalid", {"aws_cluster_ssh_admin_cidrs": ["192.0.2.1"]}, "aws_cluster_ssh_admin_cidrs=192.0.2.1: give IPv4 CIDRs"),
    ("ssh-open-to-world", {"aws_cluster_ssh_admin_cidrs": ["0.0.0.0/0"]}, "SSH would be open to the internet"),
    ("min-above-desired", {"aws_cluster_worker_min_size": 3, "aws_cluster_worker_desired_capacity": 1},
     "aws_cluster_worker_min_size=3, aws_cluster_worker_desired_capacity=1"),
    ("desired-above-max", {"aws_cluster_worker_desired_capacity": 20, "aws_cluster_worker_max_size": 10},
     "aws_cluster_worker_desired_capacity=20,\naws_cluster_worker_max_size=10"),
    ("instance-type-format", {"aws_cluster_worker_instance_types": ["large"]}, "use EC2 instance type names"),
    ("ami-id-format", {"aws_cluster_ami_id": "ami-xyz"}, "aws_cluster_ami_id=ami-xyz / aws_cluster_worker_ami_id="),
    ("volume-too-small", {"aws_cluster_worker_volume_size": 2}, "aws_cluster_worker_volume_size=2"),
    ("boot-attempts-zero", {"aws_cluster_worker_boot_attempts": 0}, "aws_cluster_worker_boot_attempts=0 (1-10)"),
    ("boot-retry-delay-too-long", {"aws_cluster_worker_boot_retry_delay": 3600}, "aws_cluster_worker_boot_retry_delay=3600 (0-600"),
    ("drain-timeout-too-short", {"aws_cluster_worker_drain_timeout": 10},
     "aws_cluster_worker_drain_timeout=10: give whole seconds from 30 to 7200"),
    ("drain-timeout-too-long", {"aws_cluster_worker_drain_timeout": 7201},
     "aws_cluster_worker_drain_timeout=7201: give whole seconds from 30 to 7200"),
    ("launch-timeout-too-short", {"aws_cluster_worker_launch_timeout": 20},
     "aws_cluster_worker_launch_timeout=20: give whole seconds from 30 to 7200"),
    ("launch-timeout-too-long", {"aws_cluster_worker_launch_timeout": 8000},
     "aws_cluster_worker_launch_timeout=8000: give whole seconds from 30 to 7200"),
    # exactly attempts x delay is not enough: the timeout must exceed it
    ("launch-timeout-within-boot-retries", {"aws_cluster_worker_launch_timeout": 150, "aws_cluster_worker_boot_attempts": 5,
                                            "aws_cluster_worker_boot_retry_delay": 30},
     "aws_cluster_worker_launch_timeout=150 must exceed aws_cluster_worker_boot_attempts x aws_cluster_worker_boot_retry_delay"
     " = 5 x 30 = 150 seconds"),
    ("node-pool-format", {"aws_cluster_worker_node_pool": "GPU Pool"}, "aws_cluster_worker_node_pool=GPU Pool"),
    ("cpu-target-range", {"aws_cluster_worker_cpu_target": 150}, "aws_cluster_worker_cpu_target=150: give a percentage"),
    # the spec's choices take a null for '' (off); preflight still refuses it
    ("efs-transition-null", {"aws_cluster_efs_transition_to_ia": None}, "aws_cluster_efs_transition_to_ia is null: use ''"),
    ("domain-format", {"aws_cluster_domain": "hub_example"}, "aws_cluster_domain=hub_example: give a lowercase"),
    ("dns-without-domain", {"aws_cluster_dns_record": True}, "aws_cluster_dns_record is true but aws_cluster_domain is empty"),
    ("dns-without-zone", {"aws_cluster_dns_record": True, "aws_cluster_domain": "hub.example.org"},
     "set aws_cluster_hosted_zone to the Route53\nzone that contains it (given: '')"),
    ("dns-zone-mismatch", {"aws_cluster_dns_record": True, "aws_cluster_domain": "hub.example.org",
                           "aws_cluster_hosted_zone": "example.net"}, "(given: 'example.net')"),
    ("existing-vpc-without-subnets", {"aws_cluster_vpc_id": "vpc-0123456789abcdef0"},
     "aws_cluster_vpc_id=vpc-0123456789abcdef0 needs aws_cluster_existing_public_subnet_ids"),
    ("ecr-repository-name", {"aws_cluster_ecr_repositories": ["Notebook"]},
     "aws_cluster_ecr_repositories=Notebook: give unique short names of lower-case letters"),
    ("ecr-repository-path", {"aws_cluster_ecr_repositories": ["team/notebook"]}, "aws_cluster_ecr_repositories=team/notebook:"),
    ("ecr-repository-twice", {"aws_cluster_ecr_repositories": ["notebook", "notebook"]},
     "aws_cluster_ecr_repositories=notebook,notebook: give unique"),
    ("ecr-repository-of-the-hub", {"aws_cluster_ecr_repositories": ["notebook", "proxy"]},
     "aws_cluster_ecr_repositories=notebook,proxy with aws_cluster_ecr_hub_images=True: aws_cluster_ecr_hub_images"),
    # ECR allows no '--' in a repository's path component: the one cluster_name rule refuses it (jhs_names.py)
    ("ecr-cluster-name-component", {"cluster_name": "pre--flight"}, "cluster_name=pre--flight: use 3-28 characters"),
    ("ssh-connection-without-key", {"swarm_ec2_connection": "jump", "aws_cluster_ssh_admin_cidrs": ["192.0.2.0/24"]},
     "The inventory connects over SSH (connection: jump in cluster.swarm_ec2.yml), but provisioning would open none"),
    ("ssm-connection", {"swarm_ec2_connection": "ssm"},
     "The inventory connects with connection: ssm (cluster.swarm_ec2.yml), which provisioning does not support"),
    ("hub-backup-retention-zero", {"aws_cluster_hub_backup_retention_days": 0},
     "aws_cluster_hub_backup_retention_days=0: give a whole number of days >= 1"),
    ("repo-url-git-protocol", {"repo_url": "git://git.example.org/jhs.git"},
     "repo_url=git://git.example.org/jhs.git: git:// and http:// are neither authenticated nor encrypted"),
    ("repo-url-plain-http", {"repo_url": "http://git.example.org/jhs.git"},
     "repo_url=http://git.example.org/jhs.git: git:// and http:// are neither authenticated nor encrypted"),
    ("repo-version-names-nothing", {"repo_version": "no-such-branch"},
     "repo_version=no-such-branch: file://"),
    ("ecr-keep-images-negative", {"aws_cluster_ecr_keep_images": -1}, "aws_cluster_ecr_keep_images=-1: give a whole number >= 0"),
]

# Rejected by meta/argument_specs.yml (a single setting's type or fixed list of values, which preflight no longer
# repeats): the role's argument validation, its first task, names the setting before any AWS call.
SPEC_REJECTED = [
    ("efs-transition", {"aws_cluster_efs_transition_to_ia": "AFTER_2_DAYS"},
     "value of aws_cluster_efs_transition_to_ia must be one of: , AFTER_1_DAY, AFTER_7_DAYS, AFTER_14_DAYS, AFTER_30_DAYS,"
     " AFTER_60_DAYS, AFTER_90_DAYS, AFTER_180_DAYS, AFTER_270_DAYS, AFTER_365_DAYS, got: AFTER_2_DAYS"),
]


class Recorder(BaseHTTPRequestHandler):
    """Answers like an AWS endpoint that denies everything, and counts requests."""
    count = 0
    lock = threading.Lock()

    def _deny(self):
        with Recorder.lock:
            Recorder.count += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                b"<Message>recorder</Message></Error><RequestId>0</RequestId></ErrorResponse>")
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _deny

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def recorder_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_provision(env: dict, recorder: str, overrides: dict) -> subprocess.CompletedProcess:
    extra = dict(VALID, aws_endpoint_url=recorder)
    extra.update(overrides)
    env = dict(env, AWS_ENDPOINT_URL=recorder, ANSIBLE_FORCE_COLOR="0", AWS_MAX_ATTEMPTS="1")
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/provision.yml", "-i", inventory(),
         "-e", json.dumps(extra)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def run_cases(env: dict, recorder: str, cases: list, work) -> subprocess.CompletedProcess:
    """Every case in one run: a host per case, on the control node, with the case's settings as its vars."""
    local = yaml.safe_load((ROOT / "inventories/lab/localhost.yml").read_text())["all"]["hosts"]["localhost"]
    hosts = {name: {**local, **VALID, "aws_endpoint_url": recorder, **overrides} for name, overrides, _ in cases}
    inv = work / "cases.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    env = dict(env, AWS_ENDPOINT_URL=recorder, ANSIBLE_FORCE_COLOR="0", AWS_MAX_ATTEMPTS="1")
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "tests/aws_cluster_preflight.yml", "-i", str(inv)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def outcomes(recorder_url, aws_env_module, tmp_path_factory):
    """Run every bad input (one run, a host each) and then the control and the AWS example side by side; record
    output and request counts."""
    results = {"__bad": run_cases(aws_env_module, recorder_url, BAD_INPUTS + SPEC_REJECTED,
                                  tmp_path_factory.mktemp("preflight"))}
    results["__requests_after_bad_inputs"] = Recorder.count
    with ThreadPoolExecutor(max_workers=2) as pool:
        control = pool.submit(run_provision, aws_env_module, recorder_url, {})
        example = pool.submit(run_provision, aws_env_module, recorder_url, aws_example_settings())
        results["__control"], results["__aws_example"] = control.result(), example.result()
    results["__requests_after_control"] = Recorder.count
    return results


@pytest.fixture(scope="module")
def aws_env_module():
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="eu-west-1", AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    return env


def test_at_least_fifteen_bad_inputs_with_distinct_messages():
    assert len(BAD_INPUTS) >= 15
    assert len({message for _, _, message in BAD_INPUTS}) == len(BAD_INPUTS)


def failure(proc, host: str) -> tuple[str, str]:
    """The host failed: the name of the task that failed it, and what was printed of its failure."""
    assert proc.returncode != 0, proc.stdout[-3000:]
    return host_failure(proc.stdout, host)


def test_no_case_got_past_preflight(outcomes):
    out = outcomes["__bad"].stdout
    assert "Discover |" not in out
    recap = dict(re.findall(r"^(\S+)\s+: (ok=.*)$", out[out.index("PLAY RECAP"):], re.M))
    assert sorted(recap) == sorted(name for name, _, _ in BAD_INPUTS + SPEC_REJECTED)
    assert all("failed=1" in line for line in recap.values()), recap


@pytest.mark.parametrize("name,overrides,message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_rejected_by_preflight(outcomes, name, overrides, message):
    failed_task, printed = failure(outcomes["__bad"], name)
    assert failed_task.startswith("aws_cluster : Preflight |"), failed_task
    # The message, with YAML folding undone the way the callback prints it.
    assert message.replace("\n", " ") in printed.replace("\n", " "), printed[:2000]


@pytest.mark.parametrize("name,overrides,message", SPEC_REJECTED, ids=[case[0] for case in SPEC_REJECTED])
def test_bad_input_rejected_by_argument_specs(outcomes, name, overrides, message):
    failed_task, printed = failure(outcomes["__bad"], name)
    assert failed_task.startswith("aws_cluster : Validating arguments against arg spec 'main'"), failed_task
    assert message in " ".join(printed.split()), printed[:2000]
    # no preflight task ran for this host
    ran = [task for task, section in task_sections(outcomes["__bad"].stdout)
           if task.startswith("aws_cluster : Preflight |") and f"[{name}]" in section]
    assert ran == [], ran


def test_no_aws_call_from_any_rejected_input(outcomes):
    assert outcomes["__requests_after_bad_inputs"] == 0


def aws_example_settings() -> dict:
    """What inventories/aws says to provisioning: its group_vars' cluster and aws_cluster settings, and the
    connection its inventory file gives (the plugin sets swarm_ec2_connection from it)."""
    import yaml
    example = yaml.safe_load((ROOT / "inventories/aws/group_vars/all.yml").read_text())
    # all but how the instances are reached (the control node is local) and the endpoint (the recorder's here)
    settings = {k: v for k, v in example.items() if not k.startswith("ansible_") and k != "aws_endpoint_url"}
    # its repo_url is the project's public repository, which these machines cannot reach: its scheme is checked
    # here, and then a local repository stands in for it where repo_version is resolved
    assert settings["repo_url"].startswith("https://"), settings["repo_url"]
    settings.update(repo_url=VALID["repo_url"], repo_version="main")
    plugin = yaml.safe_load((ROOT / "inventories/aws/cluster.swarm_ec2.yml").read_text())
    return dict(settings, swarm_ec2_connection=plugin["connection"])


def test_the_aws_example_passes_preflight(outcomes):
    """inventories/aws as written: SSH through the manager with a key pair and admin networks."""
    assert aws_example_settings()["swarm_ec2_connection"] == "jump"
    proc = outcomes["__aws_example"]
    assert "TASK [aws_cluster : Discover | account and partition of the credentials]" in proc.stdout, proc.stdout[-3000:]


def test_control_input_passes_preflight_and_reaches_the_endpoint(outcomes):
    proc = outcomes["__control"]
    assert "TASK [aws_cluster : Discover | account and partition of the credentials]" in proc.stdout, proc.stdout[-3000:]
    assert outcomes["__requests_after_control"] > 0
