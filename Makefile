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
test: setup
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest -q

clean:
	rm -rf .tava
