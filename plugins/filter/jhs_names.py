# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that hand roles and playbooks the shared names and rules of plugins/module_utils/jhs_names.py.

    cluster_name | jhs_names                 every name of the cluster (e.g. .workers, .drain, .ssm.join_token)
    cluster_name | jhs_cluster_name_error    '' or the preflight message (the setting and what is allowed)
    aws_region | jhs_region_error            '' or the preflight message (the regions botocore knows)
    'uid' | jhs_home                         uid, gid or mode of a user's home directory
    outbound_proxy | jhs_proxy_env(direct)   the proxy's environment ({} without one), NO_PROXY with direct too
    outbound_proxy | jhs_proxy_error         '' or the preflight message

Found through ansible.cfg's filter_plugins (plugins/filter), which ansible-pull on a worker reads from the
repository it checked out. The module is loaded by its path, next to this file, as a controller plugin cannot
import a module_utils directory of its own.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The same few lines load it in plugins/inventory/swarm_ec2.py, on purpose: Ansible loads each plugin file on its
# own by its path (this one as ansible.plugins.filter.jhs_names_<hash of the path>, the inventory plugin as
# ansible.plugins.inventory.swarm_ec2), so neither has a package to import a sibling from, and ansible.cfg's
# module_utils path serves modules only (AnsiballZ), not controller code. A shared helper would have to be found
# by path in the same way, so it would move these lines rather than remove them; and the inventory plugin runs
# (ansible-inventory, the inventory benchmark) without any filter loaded. Both use one sys.modules name, so the file
# runs once and both get the same module.
_SPEC = importlib.util.spec_from_file_location(
    "jhs_names_module_utils", Path(__file__).resolve().parent.parent / "module_utils" / "jhs_names.py")
_names = sys.modules.get(_SPEC.name)
if _names is None:
    _names = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(_names)
    sys.modules[_SPEC.name] = _names


def jhs_home(field):
    """One of uid, gid, mode of a user's home directory."""
    home = _names.home()
    if field not in home:
        raise AnsibleFilterError(f"jhs_home: ask for one of {', '.join(home)}, not {field!r}")
    return home[field]


def jhs_sdk_env(field):
    """The environment of AWS SDK calls made on an instance: 'instance' | jhs_sdk_env."""
    try:
        return _names.sdk_env(field)
    except ValueError as err:
        raise AnsibleFilterError(str(err)) from err


class FilterModule:
    def filters(self):
        return {
            "jhs_names": _names.names,
            "jhs_cluster_name_error": _names.cluster_name_error,
            "jhs_region_error": _names.region_error,
            "jhs_home": jhs_home,
            "jhs_sdk_env": jhs_sdk_env,
            "jhs_proxy_env": _names.proxy_env,
            "jhs_proxy_error": _names.proxy_error,
        }
