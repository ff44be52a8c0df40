# The two commands of the README: `make lab` and `make test`. Everything they need is set up here.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: help venv docker browser images lab lab-up lab-down lab-status lab-dashboard lab-rehearsal lab-rehearsal-down lint pytest molecule test settings-doc bench bench-autoscale

help:
	@echo "make lab       bring up the local lab and run site.yml against it (ends with the hub URL)"
	@echo "make test      run every test: lint, pytest (incl. the lab and the molecule scenarios)"
	@echo "make lab-dashboard  draw the lab cluster's CloudWatch dashboard into .lab/dashboard.png"
	@echo "make lab-rehearsal  rehearse inventories/aws as written in the lab (make lab-rehearsal-down: tear it down)"
	@echo "make lab-down  remove everything the lab created"

$(BIN)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11 or newer is needed (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed: install python3-venv (apt-get install python3-venv) and re-run" >&2; exit 2; }
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

# Two speed-ups of the control node's Ansible, each a file that goes into the venv's site-packages with a .pth line
# that imports it at every start (each file says why): a bytecode cache for what the modules import from their zip
# (scripts/jhs_ansiballz_cache.py), and no cyclic garbage collection in ansible-playbook's forked workers
# (scripts/jhs_ansible_worker_gc.py).
SPEEDUPS := jhs_ansiballz_cache jhs_ansible_worker_gc
$(BIN)/.ansible-speedups: $(SPEEDUPS:%=scripts/%.py) $(BIN)/.installed
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  for m in $(SPEEDUPS); do cp scripts/$$m.py "$$site/" && echo "import $$m" > "$$site/$$m.pth" || exit 1; done
	@touch $@

venv: $(BIN)/.installed $(BIN)/.ansible-speedups

docker:
	@scripts/ensure-docker

# Debian's chromium and chromium-driver, for the lab's real-browser test (tests/lab/browser.py). After the engine's
# install: both use apt, which takes one install at a time.
browser: docker
	@scripts/ensure-browser

images: venv docker
	$(BIN)/python -m lab images

lab-up: venv docker
	$(BIN)/python -m lab up

# site.yml's output goes to the terminal and to .lab/logs/site.log; jhs_phases (plugins/callback) names each phase
# as it starts and, on a failure, the phase, host and task, and that log.
lab: lab-up
	@mkdir -p .lab/logs
	@set -o pipefail; set -a && . .lab/env && set +a && export JHS_RUN_LOG=.lab/logs/site.log && \
	  $(BIN)/ansible-playbook site.yml -i inventories/lab 2>&1 | tee $$JHS_RUN_LOG || \
	  { echo "error: site.yml failed in the phase named above; the whole log: .lab/logs/site.log" >&2; exit 2; }
	$(BIN)/python -m lab summary

# A copy of inventories/aws as written, with only what the lab must set over it (lab/rehearsal_overlay.yml), from an
# empty account to a hub answering over HTTPS with an ACME certificate, beside the lab's cluster (docs/lab.md).
lab-rehearsal: lab-up
	$(BIN)/python -m lab rehearse

lab-rehearsal-down: venv
	$(BIN)/python -m lab rehearse --down

lab-down: venv
	$(BIN)/python -m lab down

lab-status: venv
	$(BIN)/python -m lab status

# The cluster's CloudWatch dashboard, drawn from the lab endpoint's metrics into .lab/dashboard.png.
lab-dashboard: venv
	$(BIN)/python -m lab dashboard

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production

# Two workers (pytest-xdist): the lab's tests in one, in file order; every other module (or group of modules sharing
# a session fixture) goes to the other (tests/conftest.py names the units and their order). The lab's worker is the
# critical path: the other runs at a lower priority (nice 10). A third worker made the run longer (session 26: the
# lab's first site.yml 1243 s against 786 s, docs/benchmarks.md). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
pytest: venv docker browser images
	$(BIN)/python -m pytest --durations=25 -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

molecule: venv docker
	scripts/run-molecule

# pytest runs the molecule scenarios too (tests/test_molecule.py), beside the lab's tests. The steps before pytest
# run side by side where they can (the venv's pip beside the engine's apt install; then lint, the lab images and the
# browser), then pytest, whose own prerequisites are then already there.
test:
	@$(MAKE) --no-print-directory -j4 --output-sync=target lint images browser
	@$(MAKE) --no-print-directory pytest

# docs/settings.md from every role's meta/argument_specs.yml (tests/test_role_specs.py fails when it is stale).
settings-doc: venv
	$(BIN)/python scripts/settings-doc

bench: venv
	$(BIN)/python benchmarks/inventory_bench.py
	$(BIN)/python benchmarks/lab_boot.py
	$(BIN)/python benchmarks/spawn_bench.py
	$(BIN)/python benchmarks/worker_boot_bench.py

# Both shipped traces replayed against the running lab (docs/autoscaling.md), about 15 minutes each.
bench-autoscale: venv
	$(BIN)/pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/autoscale_replay.py --trace benchmarks/traces/class20.csv \
	  --schedule benchmarks/traces/class20.schedule.json --slots 7 --prewarm 120 --real-time 1680:1960 \
	  --plot .lab/bench/class20.png
	$(BIN)/python benchmarks/autoscale_replay.py --trace benchmarks/traces/day.csv --plot .lab/bench/day.png
