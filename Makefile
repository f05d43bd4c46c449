# The README's two commands: `make demo` and `make test`. Both set up .venv first if needed.
VENV ?= .venv
export TAVA_VENV := $(VENV)

.PHONY: setup demo test bench clean

setup:
	@bash scripts/bootstrap.sh

# Bytecode caching on (here too): a demo re-run served from cache is mostly Python start-up.
demo: setup
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/tava demo

# Bytecode caching on: the suite starts many Python processes (Prefect servers, killed runs).
# Two workers or more (one per core, at most 4): much of the suite waits on child processes and
# servers, so 2 workers on 2 cores took 13 minutes where one took 23 (session 35). Tests that share
# a session fixture too costly to start twice run on one worker (`xdist_group`, `--dist loadgroup`).
test: setup
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadgroup

clean:
	rm -rf .tava
