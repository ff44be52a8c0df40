"""Build the lab's container images from distribution packages, cached by recipe.

No image registry is reachable from the machines this project is built on, so every image starts
from a Debian root file system made by debootstrap and imported into the local Docker engine.
Each image is tagged with a hash of its recipe (the files that make it, the mirror, the CA bundle
it trusts), so an unchanged recipe is never rebuilt and a changed one always is.

Images:
  base  Debian bookworm minbase + python3 and systemd, trusting the CA bundle given by LAB_CA_BUNDLE
  cloud base + sshd, sudo and boot tooling, no Docker engine, like Debian's cloud image: the lab's base AMI
  node  cloud's recipe + Docker engine and the modules' libraries: the molecule scenarios' nodes
  imds  base + the instance metadata stand-in server
  registry  base + Debian's docker-registry: the Docker Hub and ECR stand-ins
  proxy  base + Debian's tinyproxy: an outbound (corporate) proxy on the lab's network
  acme  base + Debian's pebble and certbot: the lab's private ACME CA (the rehearsal of inventories/aws)
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import config

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE / "images"
BASE_RECIPE_VERSION = "1"
# Packages of the base image: enough for Ansible (python3), to fetch things over HTTPS, and systemd as the nodes'
# init (PID 1), as on an EC2 instance.
BASE_PACKAGES = ["python3", "python3-apt", "ca-certificates", "curl", "iproute2", "procps", "gnupg",
                 "systemd", "systemd-sysv", "dbus"]


# Images built from images/node with these packages (build argument PACKAGES).
# Both have sshd and sudo, as Debian's cloud image (Ansible reaches the lab's nodes over SSH, as on AWS).
NODE_RECIPES = {"cloud": "openssh-server sudo",
                "node": "openssh-server sudo docker.io iptables git python3-docker python3-boto3 python3-yaml "
                        "python3-jinja2"}


class BuildError(RuntimeError):
    """An image failed to build; the message names the image and the step."""


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def _dir_bytes(path: Path) -> bytes:
    out = []
    for f in sorted(path.rglob("*")):
        if f.is_file():
            out.append(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes())
    return b"\0\0".join(out)


def ca_bundle_bytes() -> bytes:
    bundle = config.ca_bundle()
    return Path(bundle).read_bytes() if bundle else b""


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (LAB_DEBIAN_MIRROR overrides)."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for src in candidates:
        for line in src.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                return m.group(1)
    raise BuildError(
        "base image: cannot find a Debian mirror in /etc/apt/sources.list.d/*.sources or "
        "/etc/apt/sources.list; set LAB_DEBIAN_MIRROR to a bookworm mirror URL")


def tag_for(name: str) -> str:
    base_hash = _sha(BASE_RECIPE_VERSION.encode(), " ".join(BASE_PACKAGES).encode(),
                     debian_mirror().encode(), ca_bundle_bytes())
    if name == "base":
        return f"{config.IMAGE_PREFIX}/base:{base_hash}"
    if name in NODE_RECIPES:
        extra = (NODE_RECIPES[name] + "|" + os.environ.get("LAB_NODE_EXTRA_PACKAGES", "")).encode()
        return f"{config.IMAGE_PREFIX}/{name}:{_sha(base_hash.encode(), _dir_bytes(IMAGES_DIR / 'node'), extra)}"
    return f"{config.IMAGE_PREFIX}/{name}:{_sha(base_hash.encode(), _dir_bytes(IMAGES_DIR / name), b'')}"


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _run_step(image: str, step: str, cmd: list[str], log: Path, **kw) -> None:
    with log.open("ab") as fh:
        fh.write(f"\n### {image}: {step}\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, **kw).returncode
    if rc != 0:
        raise BuildError(f"{image} image failed at step '{step}' (exit {rc}); log: {log}")


def build_base(log: Path) -> str:
    tag = tag_for("base")
    if image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise BuildError("base image failed at step 'find debootstrap': install it "
                         "(apt-get install debootstrap)")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="jhs-lab-rootfs-") as root:
        _run_step("base", "debootstrap bookworm", [
            "debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
            "bookworm", root, mirror], log)
        bundle = ca_bundle_bytes()
        if bundle:
            # Trust the host's CA bundle (a TLS-inspecting proxy's CA lives there).
            extra = Path(root, "usr/local/share/ca-certificates/lab-host-bundle.crt")
            extra.write_bytes(bundle)
            Path(root, "etc/ssl/certs/ca-certificates.crt").write_bytes(bundle)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in Path(root, cache).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        _run_step("base", "docker import", [
            "docker", "import", "--change", f"LABEL {config.LABEL}.image=base",
            "--change", 'CMD ["/bin/bash"]', "-", tag], log, stdin=tar.stdout)
        tar.wait()
    return tag


def build_from_dir(name: str, base: str, log: Path) -> str:
    tag = tag_for(name)
    if image_exists(tag):
        return tag
    cmd = ["docker", "build", "--force-rm", "--build-arg", f"BASE={base}", "--label", f"{config.LABEL}.image={name}",
           "-t", tag]
    if name in NODE_RECIPES:
        cmd += ["--build-arg", f"PACKAGES={NODE_RECIPES[name]}",
                "--build-arg", "EXTRA_PACKAGES=" + os.environ.get("LAB_NODE_EXTRA_PACKAGES", "")]
    cmd.append(str(IMAGES_DIR / ("node" if name in NODE_RECIPES else name)))
    with log.open("ab") as fh:
        fh.write(f"\n### {name}: docker build\n".encode())
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                            env={**os.environ, "DOCKER_BUILDKIT": "0"}).returncode
    if rc != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))  # docker colours stderr
        steps = re.findall(r"^Step \d+/\d+ : (.*)$", text, re.M)
        step = steps[-1] if steps else "docker build"
        errors = re.findall(r"^(?:E: |ERROR|error).*$", text[text.rfind("### " + name):], re.M)
        cause = f": {errors[-1].strip()}" if errors else ""
        raise BuildError(f"{name} image failed at step '{step}' (exit {rc}){cause}; log: {log}")
    return tag


# Built from the base image, side by side (each mostly waits on the mirror and dpkg); in this order a failure is told.
FROM_BASE = ("cloud", "node", "imds", "registry", "proxy", "acme")


def build_all(log: Path) -> dict[str, str]:
    """Build (or reuse) every lab image; return {name: tag}. The base goes first (log), then the others side by
    side, each with its own log beside it (build-<name>.log); the first of FROM_BASE that failed is the error."""
    log.parent.mkdir(parents=True, exist_ok=True)
    base = build_base(log)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(FROM_BASE)) as pool:
        builds = {name: pool.submit(build_from_dir, name, base, log.with_name(f"build-{name}.log"))
                  for name in FROM_BASE}
    tags = {"base": base}
    for name, build in builds.items():
        tags[name] = build.result()        # a BuildError of the first failed image, in FROM_BASE's order
    return tags
