"""efs_mount: the rendered fstab line and systemd mount unit, exactly; home directory ownership; preflight.

The kernel of the build machines has no NFS client, so the role runs on localhost in lab-bind mode (render,
do not mount) with every path it writes pointed into a temporary directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, host_failure

FS_ID = "fs-0123456789abcdef0"
AWS_OPTIONS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"


def role_vars(tmp_path: Path, **settings) -> dict:
    """The role's settings for a run with every path under tmp_path; extra settings as given."""
    mnt = tmp_path / "mnt" / "efs"
    (tmp_path / "units").mkdir(parents=True, exist_ok=True)
    return {
        "ansible_python_interpreter": str(VENV_BIN / "python"),
        "aws_region": "eu-west-1",
        "efs_mount_file_system_id": FS_ID,
        "efs_mount_point": str(mnt),
        "efs_mount_availability_zone": "eu-west-1b",
        "efs_mount_fstab_path": str(tmp_path / "fstab"),
        "efs_mount_unit_dir": str(tmp_path / "units"),
        "efs_mount_lab_bind": True,
        "efs_mount_users": ["alice", "bob-2"],
        **settings,
    }


def run_role(tmp_path: Path, *args: str, **settings) -> subprocess.CompletedProcess:
    """Apply efs_mount to localhost with paths under tmp_path; extra settings as role variables."""
    variables = role_vars(tmp_path, **settings)
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: true
          gather_subset: [min]
          roles: [efs_mount]
        """))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
                           "-e", f"@{tmp_path / 'vars.json'}", *args], env=ENV, capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)


ENV = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
       "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


def recap(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("localhost") and "ok=" in line)


def test_fstab_line_is_awss_recommended_mount_of_the_az_mount_target(tmp_path):
    result = run_role(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    mnt = tmp_path / "mnt" / "efs"
    assert (tmp_path / "fstab").read_text() == (
        f"eu-west-1b.{FS_ID}.efs.eu-west-1.amazonaws.com:/ {mnt} nfs4 {AWS_OPTIONS} 0 0\n")
    homes = mnt / "home"
    for path, mode in ((homes, 0o755), (homes / "alice", 0o700), (homes / "bob-2", 0o700)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, mode), path   # jhs_names.home()
    # the engine starts only once the file system is mounted (a drop-in of docker.service)
    dropin = (tmp_path / "units" / "docker.service.d" / "jhs-efs.conf").read_text()
    assert dropin.splitlines()[1:] == ["[Unit]", f"RequiresMountsFor={mnt}"], dropin
    # Second run changes nothing.
    again = run_role(tmp_path)
    assert again.returncode == 0, again.stdout
    assert "changed=0" in recap(again.stdout), again.stdout


def test_systemd_unit_is_exact_and_replaces_the_fstab_entry(tmp_path):
    assert run_role(tmp_path).returncode == 0
    result = run_role(tmp_path, efs_mount_method="systemd", efs_mount_target="regional_dns")
    assert result.returncode == 0, result.stdout + result.stderr
    mnt = tmp_path / "mnt" / "efs"
    unit_name = str(mnt).strip("/").replace("-", "\\x2d").replace("/", "-") + ".mount"
    assert (tmp_path / "units" / unit_name).read_text() == textwrap.dedent(f"""\
        #
        # Ansible managed
        #
        [Unit]
        Description=EFS file system {FS_ID} (user home directories)
        Wants=network-online.target
        After=network-online.target

        [Mount]
        What={FS_ID}.efs.eu-west-1.amazonaws.com:/
        Where={mnt}
        Type=nfs4
        Options={AWS_OPTIONS}

        [Install]
        WantedBy=remote-fs.target
        """)
    assert (tmp_path / "fstab").read_text() == "", "the fstab entry of the fstab method must be gone"


def test_tls_mount_goes_through_the_efs_mount_helper_pinned_to_the_az(tmp_path):
    result = run_role(tmp_path, efs_mount_tls=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "fstab").read_text() == (
        f"{FS_ID}:/ {tmp_path / 'mnt' / 'efs'} efs tls,noresvport,_netdev,az=eu-west-1b 0 0\n")


def test_mount_target_by_ip(tmp_path):
    result = run_role(tmp_path, efs_mount_target="ip", efs_mount_target_ip="10.10.128.20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "fstab").read_text().startswith("10.10.128.20:/ ")


def test_check_mode_reports_changes_and_writes_nothing(tmp_path):
    result = run_role(tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" not in recap(result.stdout)
    assert not (tmp_path / "mnt").exists()
    # ansible.posix.mount touches a missing fstab file even in check mode (a real /etc/fstab always exists),
    # but writes no entry.
    assert not (tmp_path / "fstab").exists() or (tmp_path / "fstab").read_text() == ""


# (settings, the message preflight or argument_specs must print)
BAD_SETTINGS = [
    ({"efs_mount_file_system_id": "efs-123"}, "efs_mount_file_system_id must be empty or an EFS id"),
    ({"efs_mount_users": ["Alice Smith"]}, "efs_mount_users lower-case names"),
    ({"efs_mount_target": "ip", "efs_mount_target_ip": "not-an-ip"},
     "with efs_mount_target=ip, efs_mount_target_ip must be an IPv4 address (got 'not-an-ip')"),
    ({"efs_mount_options": ["nfsvers=3", "hard"]}, "efs_mount_options must keep nfsvers=4.1"),
    # a single setting's fixed list of values: the role's argument_specs (choices), checked before its preflight
    ({"efs_mount_method": "autofs"}, "value of efs_mount_method must be one of: fstab, systemd, got: autofs"),
    ({"efs_mount_target": "nearest"}, "value of efs_mount_target must be one of: az_dns, regional_dns, ip, got: nearest"),
]


@pytest.fixture(scope="module")
def bad_settings_run(tmp_path_factory):
    """Every case of BAD_SETTINGS in one ansible-playbook run: a host per case (on the control node, its settings
    and its own directory as its vars): one Ansible start instead of one per case."""
    work = tmp_path_factory.mktemp("efs-preflight")
    hosts = {f"case{i}": {"ansible_connection": "local", **role_vars(work / f"case{i}", **settings)}
             for i, (settings, _) in enumerate(BAD_SETTINGS)}
    (work / "cases.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    (work / "play.yml").write_text("- hosts: all\n  gather_facts: true\n  gather_subset: [min]\n  roles: [efs_mount]\n")
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(work / "cases.yml"), str(work / "play.yml")],
                          env=ENV, capture_output=True, text=True, cwd=work, timeout=300)
    return proc, work


@pytest.mark.parametrize("case", range(len(BAD_SETTINGS)))
def test_bad_settings_stop_before_anything_changes(bad_settings_run, case):
    proc, work = bad_settings_run
    assert proc.returncode != 0
    _, printed = host_failure(proc.stdout, f"case{case}")
    assert BAD_SETTINGS[case][1] in printed, proc.stdout[-4000:]
    assert not (work / f"case{case}" / "fstab").exists() and not (work / f"case{case}" / "mnt").exists()