# esl-agent: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= conf/agent.yaml
EXTRAS ?= all,dev
OUT    ?= demo-out

.PHONY: help demo demo-short test lint run bench bench-quick conf deploy clean

help:
	@echo "make demo    one whole simulated call (creates $(VENV), installs, runs)"
	@echo "make test    the test suite (creates $(VENV) if needed)"
	@echo "make run     the controller for a real FreeSWITCH ($(CONFIG))"
	@echo "make lint    ruff"
	@echo "make bench   benchmarks -> BENCHMARKS.md (bench-quick: under a minute)"
	@echo "make conf    render FreeSWITCH/firewall/fail2ban files from conf/policy.yaml"
	@echo "make deploy  install on a server over ssh (HOST=user@host)"

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/esl-agent demo --out $(OUT)

demo-short: $(STAMP)
	$(BIN)/esl-agent demo --short --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check esl_agent tests benchmarks scripts

run: $(STAMP)
	@if [ -f $(CONFIG) ]; then cfg=$(CONFIG); else \
	  echo "NOTICE: $(CONFIG) not found; running with conf/agent.example.yaml (copy it to $(CONFIG) and edit)"; \
	  cfg=conf/agent.example.yaml; fi; \
	$(BIN)/esl-agent run --config $$cfg

bench: $(STAMP)
	$(BIN)/python -m benchmarks --out BENCHMARKS.md

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick --out BENCHMARKS.md

conf: $(STAMP)
	$(BIN)/esl-agent conf render

deploy: $(STAMP)
	scripts/deploy.sh $(HOST)

clean:
	rm -rf $(VENV) build *.egg-info demo-out
