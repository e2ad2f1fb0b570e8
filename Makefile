# Two commands on a fresh machine with Python 3.11+:  make run  |  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export SECONDLOOK_DATA ?= $(CURDIR)/data
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test venv samples models bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the `secondlook` console script
	touch $@

venv: $(VENV)/.installed

run: venv  ## start the app on http://localhost:8501
	$(VENV)/bin/streamlit run app.py

test: venv  ## unit, app (AppTest), model-card and browser tests
	$(PY) -m pytest

samples: venv  ## re-make the bundled demo samples in sample_images/ from the datasets (by the rule)
	$(PY) -m core.samples --bundle

models: venv  ## retrain every bundled model (hours on 2 CPU cores)
	for tm in $$($(PY) -c "from core.models import TASKS; print(' '.join(f'{t}/{m.id}' for t in TASKS.values() for m in t.models))"); do \
	  $(PY) -m core.train --task $${tm%%/*} --model $${tm##*/} || exit 1; done

bench: venv  ## speed and memory benchmarks, table + benchmarks/results/latest.json
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache
