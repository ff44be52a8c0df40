"""The hub's spawner module (roles/jupyterhub/files/jhs_spawner.py) without Docker or a hub: the profiles' spawn
form, the chosen profile's options and sizes, the user's home, and the pure helpers. Needs jupyterhub and
dockerspawner in the venv (requirements.txt, the versions the hub image installs). The paths that talk to Docker
run with stubs in the real hub image (tests/test_jupyterhub_config.py, tests/jhs_hub/spawner_poll.py) and for
real in the lab."""
from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "roles" / "jupyterhub" / "files"
sys.path.insert(0, str(FILES))

import jhs_spawner  # noqa: E402

G = 1024 ** 3
# As the config renders _jupyterhub_profiles: numbers as numbers, sizes as strings, the default image filled in.
SMALL = {"name": "small", "display_name": "Small (1 CPU, 1G)", "image": "jhs/notebook:abc", "cpu_limit": 1.0,
         "mem_limit": "1G"}
LARGE = {"name": "large", "display_name": "Large (2 CPU, 4G)", "image": "registry.example.test/science:2024.1",
         "cpu_limit": 2.0, "cpu_guarantee": 0.5, "mem_limit": "4G", "mem_guarantee": "1G"}


class User:
    """What the spawner reads of its hub user here (its name, for the volume template)."""

    def __init__(self, name):
        self.name = name


def spawner(user="alice", **settings):
    """A spawner configured as the config file does it (c.SwarmSpawner.<name> = ...)."""
    config = Config()
    for key, value in {"image": SMALL["image"], "allowed_images": [SMALL["image"], LARGE["image"]],
                       "cpu_limit": 1.0, "mem_limit": "2G", **settings}.items():
        config.SwarmSpawner[key] = value
    return jhs_spawner.SwarmSpawner(config=config, user=User(user))


# --- the spawn form ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profiles", [[], [SMALL]], ids=["none", "one"])
def test_no_form_with_fewer_than_two_profiles(profiles):
    sp = spawner(profiles=profiles)
    assert sp.options_form == ""
    # what the hub's spawn page asks for: falsy, so it spawns at once
    assert asyncio.run(sp.get_options_form()) == ""


def test_two_profiles_offer_both_the_first_selected():
    form = asyncio.run(spawner(profiles=[SMALL, LARGE]).get_options_form())
    assert form == ('<label for="profile">Server profile</label><select class="form-control" name="profile">'
                    '<option value="small" selected>Small (1 CPU, 1G)</option>'
                    '<option value="large">Large (2 CPU, 4G)</option></select>')


def test_a_configured_form_still_wins():
    assert spawner(profiles=[SMALL, LARGE], options_form="<p>mine</p>").options_form == "<p>mine</p>"


# --- the form's data ---------------------------------------------------------------------------------------------
def test_a_known_profile_gives_its_name_and_image():
    sp = spawner(profiles=[SMALL, LARGE])
    # as the hub's spawn page calls it (a dict of lists of strings)
    assert sp.run_options_from_form({"profile": ["large"]}) == {"profile": "large", "image": LARGE["image"]}
    assert sp.run_options_from_form({"profile": ["small"]}) == {"profile": "small", "image": SMALL["image"]}


@pytest.mark.parametrize("formdata", [{"profile": ["huge"]}, {}, {"image": ["evil/miner:1"]}],
                         ids=["unknown", "empty", "image-only"])
def test_an_unknown_profile_gives_no_options(formdata):
    assert spawner(profiles=[SMALL, LARGE]).run_options_from_form(formdata) == {}


def test_the_profile_image_is_checked_against_allowed_images():
    """dockerspawner's start checks user_options' image; a profile's image outside the list is refused there."""
    sp = spawner(profiles=[SMALL, LARGE])
    assert asyncio.run(sp.check_allowed(LARGE["image"])) == LARGE["image"]
    with pytest.raises(Exception, match="not in allowed list"):
        asyncio.run(sp.check_allowed("evil/miner:1"))


# --- the chosen profile's sizes ---------------------------------------------------------------------------------
def test_the_profile_sets_every_size_it_names():
    sp = spawner(profiles=[SMALL, LARGE])
    sp.user_options = {"profile": "large", "image": LARGE["image"]}
    sp.apply_profile()
    assert (sp.cpu_limit, sp.cpu_guarantee, sp.mem_limit, sp.mem_guarantee) == (2.0, 0.5, 4 * G, G)


def test_the_configured_sizes_stay_for_those_the_profile_does_not_name():
    sp = spawner(profiles=[SMALL, dict(LARGE, cpu_guarantee="", mem_guarantee=None)], cpu_guarantee=0.25,
                 mem_guarantee="512M")
    sp.user_options = {"profile": "small"}
    sp.apply_profile()
    assert (sp.cpu_limit, sp.cpu_guarantee, sp.mem_limit, sp.mem_guarantee) == (1.0, 0.25, G, 512 * 1024 ** 2)
    sp = spawner(profiles=[SMALL, dict(LARGE, cpu_guarantee="", mem_guarantee=None)], cpu_guarantee=0.25,
                 mem_guarantee="512M")
    sp.user_options = {"profile": "large"}
    sp.apply_profile()      # empty and None are "not named"
    assert (sp.cpu_limit, sp.cpu_guarantee, sp.mem_limit, sp.mem_guarantee) == (2.0, 0.25, 4 * G, 512 * 1024 ** 2)


@pytest.mark.parametrize("user_options", [{}, {"profile": "huge"}, {"image": LARGE["image"]}],
                         ids=["none", "unknown", "image-only"])
def test_no_profile_changes_nothing(user_options):
    sp = spawner(profiles=[SMALL, LARGE])
    sp.user_options = user_options
    sp.apply_profile()
    assert (sp.cpu_limit, sp.cpu_guarantee, sp.mem_limit, sp.mem_guarantee) == (1.0, None, 2 * G, None)


# --- the user's home --------------------------------------------------------------------------------------------
@pytest.fixture
def chowns(monkeypatch):
    """os.chown recorded, not done: the tests do not run as root."""
    calls = []
    monkeypatch.setattr(jhs_spawner.os, "chown", lambda path, uid, gid: calls.append((str(path), uid, gid)))
    return calls


def test_a_missing_home_is_created_with_its_mode_and_owner(tmp_path, chowns):
    sp = spawner("alice", home_template=str(tmp_path / "efs" / "home" / "{username}"), home_mode="0750",
                 home_uid=1000, home_gid=100)
    sp.create_home()
    home = tmp_path / "efs" / "home" / "alice"
    assert home.is_dir()
    assert stat.S_IMODE(home.stat().st_mode) == 0o750
    assert chowns == [(str(home), 1000, 100)]


def test_the_default_mode_is_0700(tmp_path, chowns):
    sp = spawner("bob", home_template=str(tmp_path / "{username}"))
    assert (sp.home_mode, sp.home_uid, sp.home_gid) == ("0700", 1000, 1000)
    sp.create_home()
    assert stat.S_IMODE((tmp_path / "bob").stat().st_mode) == 0o700
    assert chowns == [(str(tmp_path / "bob"), 1000, 1000)]


def test_an_existing_home_is_left_alone(tmp_path, chowns):
    home = tmp_path / "alice"
    home.mkdir(mode=0o755)
    (home / "notebook.ipynb").write_text("{}")
    spawner("alice", home_template=str(tmp_path / "{username}")).create_home()
    assert stat.S_IMODE(home.stat().st_mode) == 0o755 and (home / "notebook.ipynb").exists()
    assert chowns == []


def test_no_home_template_creates_nothing(tmp_path, chowns, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spawner("alice").create_home()
    assert list(tmp_path.iterdir()) == [] and chowns == []


@pytest.mark.parametrize("mode", ["700x", "8", "17777", ""])
def test_a_mode_that_is_not_octal_is_refused(mode):
    with pytest.raises(TraitError, match="octal mode"):
        jhs_spawner.SwarmSpawner(home_mode=mode)


# --- the pre-spawn hook: what User.spawn runs before start ---------------------------------------------------------
def test_the_pre_spawn_hook_applies_the_profile_creates_the_home_then_runs_the_operators_hook(tmp_path, chowns):
    seen = []

    def operators_hook(sp):
        seen.append((sp.mem_limit, (tmp_path / "alice").is_dir()))
    sp = spawner("alice", profiles=[SMALL, LARGE], home_template=str(tmp_path / "{username}"),
                 pre_spawn_hook=operators_hook)
    sp.user_options = sp.run_options_from_form({"profile": ["large"]})
    assert sp.run_pre_spawn_hook() is None
    assert (sp.cpu_limit, sp.mem_limit) == (2.0, 4 * G)
    assert seen == [(4 * G, True)] and chowns == [(str(tmp_path / "alice"), 1000, 1000)]


def test_the_pre_spawn_hook_without_an_operators_hook(tmp_path, chowns):
    sp = spawner("carol", profiles=[SMALL, LARGE], home_template=str(tmp_path / "{username}"))
    sp.user_options = {}
    assert sp.run_pre_spawn_hook() is None
    assert (tmp_path / "carol").is_dir() and sp.mem_limit == 2 * G


# --- the service it creates ------------------------------------------------------------------------------------
def service_created(sp):
    """What reaches Docker's create_service when upstream's create_object builds the spec as it does (docker-py's
    types, the config's extra_container_spec), through the spawner's docker()."""
    from docker.types import ContainerSpec, Resources, TaskTemplate
    calls = []
    sp._docker = lambda method, *args, **kwargs: calls.append((method, kwargs))
    template = TaskTemplate(container_spec=ContainerSpec(image=sp.image, **sp.extra_container_spec),
                            resources=Resources(mem_limit=2 * G, mem_reservation=G // 4))

    async def create_then_inspect():
        await sp.docker("create_service", task_template=template, name="jupyter-alice")
        await sp.docker("inspect_service", "jupyter-alice")
    asyncio.run(create_then_inspect())
    (method, kwargs), other = calls
    assert method == "create_service" and other == ("inspect_service", {})
    return kwargs["task_template"]


def test_the_pids_limit_joins_the_services_resources():
    template = service_created(spawner(pids_limit=4096, extra_container_spec={"cap_drop": ["ALL"]}))
    assert template["Resources"] == {"Limits": {"MemoryBytes": 2 * G, "Pids": 4096},
                                     "Reservations": {"MemoryBytes": G // 4}}
    assert template["ContainerSpec"]["CapabilityDrop"] == ["ALL"]


def test_no_pids_limit_leaves_the_resources_alone():
    assert "Pids" not in service_created(spawner())["Resources"]["Limits"]


def test_the_service_and_its_container_carry_the_user_server_label(monkeypatch, tmp_path):
    """The service's labels name its user (jhs_reconcile reads them); its container's carry jhs.component, by which
    each node's jhs-server-isolation finds the user servers to close to one another. The operator's own labels
    stay."""
    import dockerspawner
    seen = {}

    async def upstream_create_object(self):
        seen.update(service=self.extra_create_kwargs["labels"], container=self.extra_container_spec["labels"],
                    cap_drop=self.extra_container_spec.get("cap_drop"))
        return {"ID": "service-id"}
    monkeypatch.setattr(dockerspawner.SwarmSpawner, "create_object", upstream_create_object)
    sp = spawner("dave", pack=False, registry_config=str(tmp_path / "absent.json"),
                 extra_container_spec={"cap_drop": ["ALL"], "labels": {"site": "x"}})
    assert asyncio.run(sp.create_object()) == {"ID": "service-id"}
    assert seen["service"] == {"jhs.component": "user-server", "jhs.user": "dave", "jhs.server": ""}
    assert seen["container"] == {"site": "x", "jhs.component": "user-server"}
    assert seen["cap_drop"] == ["ALL"]


# --- pure helpers -------------------------------------------------------------------------------------------------
def test_task_addresses_are_the_tasks_own_on_the_named_network():
    task = {"NetworksAttachments": [
        {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
        {"Network": {"Spec": {"Name": "jhs"}}, "Addresses": ["10.0.1.7/24", "fd00::7/64"]},
        {"Network": {}, "Addresses": ["10.9.9.9/24"]},
    ]}
    assert jhs_spawner.task_addresses(task, "jhs") == {"10.0.1.7", "fd00::7"}
    assert jhs_spawner.task_addresses(task, "other") == set()
    assert jhs_spawner.task_addresses({}, "jhs") == set()
    assert jhs_spawner.task_addresses({"NetworksAttachments": None}, "jhs") == set()
    assert jhs_spawner.task_addresses({"NetworksAttachments": [{"Network": {"Spec": {"Name": "jhs"}},
                                                                "Addresses": None}]}, "jhs") == set()


def test_task_states_alive_and_waited_on():
    """Every state up to running is alive (a re-created task after a worker loss); rejected is only waited on."""
    assert "running" in jhs_spawner.TASK_ALIVE and "ready" in jhs_spawner.TASK_ALIVE
    assert "rejected" in jhs_spawner.TASK_WAITING and "rejected" not in jhs_spawner.TASK_ALIVE
    assert not {"failed", "shutdown", "complete", "orphaned", "remove"} & jhs_spawner.TASK_ALIVE


def test_the_spawner_state_keeps_the_task_id():
    sp = spawner()
    sp.load_state({"task_id": "t1"})
    assert sp.task_id == "t1" and sp.get_state()["task_id"] == "t1"
    sp.clear_state()
    assert sp.task_id == "" and "task_id" not in sp.get_state()


def test_the_venvs_jupyterhub_and_dockerspawner_are_the_hub_images():
    """requirements.txt pins what roles/jupyterhub/defaults/main.yml installs in the hub image."""
    import yaml
    defaults = yaml.safe_load((ROOT / "roles" / "jupyterhub" / "defaults" / "main.yml").read_text())
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["jupyterhub"] == defaults["jupyterhub_version"]
    assert pins["dockerspawner"] == defaults["jupyterhub_dockerspawner_version"]
