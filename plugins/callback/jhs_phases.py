# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Phase progress for site.yml and the other playbooks: which phase runs, since when, and which one failed.

Why a plugin of our own: ansible.posix.profile_tasks times tasks and profile_roles times roles, both only at
the end; community.general.timer gives the total. None says, while the run goes, which phase it is in, nor
which phase failed. It needs nothing but ansible-core, and prints through the display, beside the stdout
callback's output.
"""
from __future__ import annotations

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: jhs_phases
type: aggregate
short_description: one line per play (a phase) with the elapsed time, a table of phases at the end
description:
  - At the start of each play it prints C(phase N <play name>) with the time since the run started.
  - At the end it prints each phase's duration and, when a task failed or a host was unreachable, the phase,
    host and task of the first failure and where the run's whole log is (the E(JHS_RUN_LOG) environment
    variable, which C(make lab) sets).
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jhs_phases"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = time.monotonic()
        self.phases: list[list] = []        # [name, start, end]
        self.failures: dict[str, tuple[str, str]] = {}    # host -> (phase, what) of its last failure

    def _close(self) -> None:
        if self.phases and self.phases[-1][2] is None:
            self.phases[-1][2] = time.monotonic()

    def v2_playbook_on_play_start(self, play):
        self._close()
        name = play.get_name().strip() or "(unnamed play)"
        self.phases.append([name, time.monotonic(), None])
        self._display.display(f"phase {len(self.phases)}  {name}  (at {_fmt(time.monotonic() - self.started)})",
                              color="cyan")

    def _failed(self, result, what: str) -> None:
        # the last one per host: a failure a block rescued is followed by the one that ended the host, if any
        phase = self.phases[-1][0] if self.phases else "(before any play)"
        self.failures[result._host.get_name()] = (phase, f"{what}: {result._task.get_name()}")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._failed(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._failed(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close()
        lines = [f"phases ({_fmt(time.monotonic() - self.started)} in all):"]
        for i, (name, start, end) in enumerate(self.phases, 1):
            lines.append(f"  {i:>2}. {_fmt(end - start):>7}  {name}")
        # only hosts the run counts as failed or unreachable (a rescued failure is neither)
        failed = [(h, *self.failures[h]) for h in sorted(self.failures)
                  if stats.failures.get(h) or stats.dark.get(h)]
        log = os.environ.get("JHS_RUN_LOG")
        for host, phase, what in failed:
            lines.append(f"FAILED in phase '{phase}' on {host}, {what}" + (f"; the whole log: {log}" if log else ""))
        self._display.display("\n".join(lines), color="red" if failed else "green")
