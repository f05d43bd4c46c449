# The README's two commands: `make demo` and `make test`. Both set up .venv first if needed.
VENV ?= .venv
export TAVA_VENV := $(VENV)

.PHONY: setup demo test bench clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/tava demo

# Bytecode caching on: the suite starts many Python processes (Prefect servers, killed runs).
test: setup
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest -q

clean:
	rm -rf .tava
