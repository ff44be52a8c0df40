"""What load_config.py and spawner_poll.py share: a JupyterHub initialised from a rendered config, and its user alice.

Mounted next to them in the real hub image (tests/test_jupyterhub_config.py), so it imports nothing from the tests.
"""
from jupyterhub import orm
from jupyterhub.app import JupyterHub


async def hub_with_alice(path):
    """JupyterHub's own initialize() loads the config file; returns the app and alice's default spawner."""
    app = JupyterHub()
    await app.initialize(["-f", path])
    user_orm = orm.User(name="alice")
    app.db.add(user_orm)
    app.db.commit()
    return app, app.users[user_orm.id].spawners[""]
