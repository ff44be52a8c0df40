"""Settings of the local lab, each overridable by an environment variable of the same name."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL = "jhs-lab"                 # every container, network and volume the lab makes carries it
IMAGE_PREFIX = "jhs-lab"
NETWORK = "jhs-lab"
BRIDGE = "jhs-lab-br"              # the network's Linux bridge: security groups are enforced on it (sgfilter)
IMDS_CONTAINER = "jhs-lab-imds"
KEY_NAME = "jhs-lab"               # the EC2 key pair `lab up` imports (.lab/ssh/id_ed25519): Ansible's SSH key


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def lab_dir() -> Path:
    """Where the lab keeps its state (.lab/ in the repository by default)."""
    return Path(setting("LAB_DIR", str(ROOT / ".lab")))


def network_cidr() -> ipaddress.IPv4Network:
    # The same CIDR as the lab cluster's VPC, so instances' private IPs are the nodes' real addresses.
    return ipaddress.ip_network(setting("LAB_NETWORK_CIDR", "10.10.0.0/16"))


def gateway() -> str:
    return str(next(network_cidr().hosts()))


def service_range() -> ipaddress.IPv4Network:
    """The slice of the lab network for the lab's own containers, away from the VPC's subnets."""
    net = network_cidr()
    return list(net.subnets(new_prefix=24))[-1]


def imds_addr() -> str:
    return str(service_range()[-2])


def aws_port() -> int:
    return int(setting("LAB_AWS_PORT", "5000"))


def region() -> str:
    return setting("LAB_REGION", "eu-west-1")


def endpoint_url() -> str:
    return f"http://{gateway()}:{aws_port()}"


def ca_bundle() -> str | None:
    """The CA bundle lab images and nodes trust (the host's by default)."""
    value = os.environ.get("LAB_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    return value if value and Path(value).is_file() else None


def efs_dir() -> Path:
    """The shared host directory bind-mounted into every node: the lab's stand-in for EFS."""
    return lab_dir() / "efs"


NODE_EFS_PATH = "/mnt/efs"
# Ansible masks a module's no_log values (the secret key, from the environment) wherever they appear in its result:
# with the secret "lab", every "labhub" a module returned came back as "********hub" (the bake copied that into
# the launch template). So the local endpoint's credentials are strings no resource name contains.
# They are an administrator's (the endpoint's user jhs-lab-admin): the lab's own machinery (the reconciler, the
# metadata stand-in) and the tests' harness use them. The operator's plays (`make lab`, .lab/env) use the operator's
# keys, whose user holds only docs/aws-permissions.md's policy for the lab cluster.
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "JHSLABLOCALENDPOINT0",
                   "AWS_SECRET_ACCESS_KEY": "jhs-local-endpoint-credential-not-a-secret"}
OPERATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "JHSLABOPERATORKEY000",
                        "AWS_SECRET_ACCESS_KEY": "jhs-lab-operator-credential-not-a-secret"}
OPERATOR_USER = "jhs-lab-operator"
OPERATOR_POLICY_NAME = "jhs-operator"
CLUSTER = "labhub"                 # inventories/lab's cluster_name: the operator policy is rendered for it
ACCOUNT = "123456789012"           # the endpoint's default account
PERMISSIONS_DOC = ROOT / "docs" / "aws-permissions.md"
REGISTRY_CONTAINER = "jhs-lab-registry"
GIT_REPO_NAME = "jupyterhub-swarm.git"
GIT_BRANCH = "lab"                 # the snapshot of the working tree that lab instances ansible-pull


def cluster_names(cluster: str = CLUSTER) -> dict:
    """A cluster's names (the lab cluster's by default), from their one owner (plugins/module_utils/jhs_names.py)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("jhs_names", ROOT / "plugins" / "module_utils" / "jhs_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.names(cluster)


def registry_addr() -> str:
    """The lab's Docker Hub stand-in, as nodes reach it (they use it as their registry mirror)."""
    return f"{service_range()[-3]}:5000"


ECR_CONTAINER = "jhs-lab-ecr"
PROXY_CONTAINER = "jhs-lab-proxy"


def proxy_addr() -> str:
    """The lab's outbound (corporate) proxy, as nodes reach it (tinyproxy; tests/lab/test_site.py sends a node
    through it)."""
    return f"{service_range()[-5]}:3128"


ACME_CONTAINER = "jhs-lab-acme"


def acme_addr() -> str:
    """The lab's private ACME CA (pebble), the rehearsal's stand-in for Let's Encrypt (lab/acme.py)."""
    return str(service_range()[-6])


def ecr_addr() -> str:
    """The lab's stand-in for the cluster's Amazon ECR registry (basic auth with the endpoint's ECR tokens)."""
    return f"{service_range()[-4]}:5000"


def ecr_host_port() -> int:
    """Where the host reaches the ECR stand-in (loopback: Docker trusts it without TLS)."""
    return int(setting("LAB_ECR_PORT", "5002"))


def registry_host_port() -> int:
    """Where the host pushes to the lab registry (loopback: Docker trusts it without TLS)."""
    return int(setting("LAB_REGISTRY_PORT", "5001"))


def git_port() -> int:
    return int(setting("LAB_GIT_PORT", "9418"))


def repo_url() -> str:
    return f"git://{gateway()}:{git_port()}/{GIT_REPO_NAME}"
