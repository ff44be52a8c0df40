"""Filters of the jupyterhub role: the scaler's settings checked by the scaler's own code (files/jhs_scaler.py), so
the preflight and the scaler can never disagree on what a valid schedule, time zone or size is."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "jhs_scaler_for_preflight", Path(__file__).resolve().parent.parent / "files" / "jhs_scaler.py")
_scaler = sys.modules.setdefault(_SPEC.name, importlib.util.module_from_spec(_SPEC))
_SPEC.loader.exec_module(_scaler)      # registered first: its dataclasses look their module up by name

_NUMBERS = ("headroom", "cooldown", "interval", "prewarm", "drain_limit", "min_size", "max_size", "reserve_cpu")


def _number(value):
    """Ansible hands templated settings over as strings: numbers become numbers again, anything else stays."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def jhs_scaler_errors(settings, profiles=(), cpu_guarantee=0.0, mem_guarantee="0"):
    """Every problem with the scaler's settings (messages naming the setting and what is allowed); [] if none.
    Every guarantee a server can ask for is checked against the workers' instance types: the default
    (jupyterhub_cpu_guarantee, jupyterhub_mem_guarantee) and each profile's, which falls back to the default."""
    s = dict(settings)
    for key in _NUMBERS:
        name = f"jupyterhub_scaler_{key}"
        if name in s:
            s[name] = _number(s[name])
    guarantees = {"jupyterhub_cpu_guarantee/jupyterhub_mem_guarantee": (cpu_guarantee or 0, mem_guarantee or "0")}
    for p in profiles or []:
        guarantees[f"jupyterhub_profiles {p.get('name')}"] = (
            p.get("cpu_guarantee", cpu_guarantee) or 0, p.get("mem_guarantee", mem_guarantee) or "0")
    s["jupyterhub_scaler_guarantees"] = guarantees
    return _scaler.settings_errors(s)


class FilterModule:
    def filters(self):
        return {"jhs_scaler_errors": jhs_scaler_errors}
