"""Load a rendered jupyterhub_config.py in the real hub image and print the effective values as JSON.

Run inside the hub image: python3 load_config.py /etc/jupyterhub/jupyterhub_config.py [profile]
JupyterHub's own initialize() loads the file and instantiates the app, the proxy and the authenticator;
a user's SwarmSpawner is then instantiated from the same config, so every "Config option ... not
recognized" warning traitlets would log in production shows up on stderr here. Nothing talks to Docker.
"""
import asyncio
import json
import os
import sys

from jupyterhub.utils import maybe_future

from hubapp import hub_with_alice


async def main(path, profile):
    app, spawner = await hub_with_alice(path)
    # as the hub does: the form page, the form's data, then User.spawn's pre-spawn hook (jhs_spawner applies the
    # profile's sizes and creates the home there)
    form = await spawner.get_options_form()
    if profile:
        spawner.user_options = await maybe_future(spawner.run_options_from_form({"profile": [profile]}))
        if spawner.user_options.get("image"):
            spawner.image = await spawner.check_allowed(spawner.user_options["image"])
    await maybe_future(spawner.run_pre_spawn_hook())
    home = spawner.format_volume_name(list(spawner.volumes)[0], spawner)
    auth = app.authenticator
    st = os.stat(home)
    out = {
        "authenticator_class": f"{type(auth).__module__}.{type(auth).__name__}",
        "client_id": getattr(auth, "client_id", None),
        "oauth_callback_url": getattr(auth, "oauth_callback_url", None),
        "allowed_organizations": sorted(getattr(auth, "allowed_organizations", []) or []),
        "authorize_url": getattr(auth, "authorize_url", None),
        "allow_all": auth.allow_all,
        "admin_users": sorted(auth.admin_users),
        "spawner_class": f"{type(spawner).__module__}.{type(spawner).__name__}",
        "spawner_mro": [f"{k.__module__}.{k.__name__}" for k in type(spawner).__mro__],
        "image": spawner.image,
        "allowed_images": sorted(spawner._get_allowed_images()),
        "network_name": spawner.network_name,
        "extra_placement_spec": spawner.extra_placement_spec,
        "extra_endpoint_spec": spawner.extra_endpoint_spec,
        "extra_container_spec": spawner.extra_container_spec,
        "pids_limit": spawner.pids_limit,
        "mem_limit": spawner.mem_limit,
        "mem_guarantee": spawner.mem_guarantee,
        "cpu_limit": spawner.cpu_limit,
        "cpu_guarantee": spawner.cpu_guarantee,
        "start_timeout": spawner.start_timeout,
        "volumes": spawner.volumes,
        "environment": spawner.environment,
        "args": spawner.args,
        "home": home,
        "home_owner": [st.st_uid, st.st_gid],
        "options_form": form,
        "hub_connect_ip": app.hub_connect_ip,
        "bind_url": app.bind_url,
        "hub_ip": app.hub_ip,
        "headers": app.tornado_settings.get("headers"),
        "ssl_cert": app.ssl_cert,
        "proxy_should_start": app.proxy.should_start,
        "proxy_api_url": app.proxy.api_url,
        "concurrent_spawn_limit": app.concurrent_spawn_limit,
        "active_server_limit": app.active_server_limit,
        "allow_named_servers": app.allow_named_servers,
        "cleanup_servers": app.cleanup_servers,
        "db_url": app.db_url,
        "services": {s["name"]: s.get("command") for s in app.services},
        "roles": {r["name"]: {"scopes": sorted(r.get("scopes", [])), "services": r.get("services", [])}
                  for r in app.load_roles},
    }
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
