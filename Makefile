# `make run` trains the default study; `make test` runs the test suite (CI calls exactly this; as root on Debian it
# installs and starts a one-node SLURM cluster, skipped with AEDISSECT_SKIP_CLUSTER=1); `make readme` publishes a
# run's verdicts and the table across the studies run under work/ (results/paper -> docs/results/) and rewrites
# README.md's answer from them.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test bench readme lint clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores $(CORES) && snakemake --report results/report.html

test: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest tests

bench: $(STAMP)
	. $(VENV)/bin/activate && python -m aedissect.nets.bench && python -m aedissect.measured results/bench.json

readme: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores $(CORES) studies_summary && python -m aedissect.analysis.answer --publish

lint: $(STAMP)
	. $(VENV)/bin/activate && ruff check . && snakefmt --check Snakefile workflow/rules && snakemake --lint

clean-venv:
	rm -rf $(VENV)
