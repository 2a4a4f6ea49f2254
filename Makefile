# The two commands of the quick start:  `make demo`  and  `make test`;  `make bench` runs the benchmarks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXAMPLE_REQS := examples/lightning_classifier/requirements.txt

.PHONY: demo test bench clean

$(STAMP): setup.py $(EXAMPLE_REQS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# compat mode: a plain .pth entry, so Hydra's plugin scan of the hydra_plugins namespace sees our code
	$(PY) -m pip install --quiet -e '.[test,pipelines,report,local-sweeps]' --config-settings editable_mode=compat
	# the Lightning example's torch, torchvision, lightning, scikit-learn (pinned: see the file)
	$(PY) -m pip install --quiet -r $(EXAMPLE_REQS)
	touch $(STAMP)

# A 4-trial hyperparameter sweep of the Lightning example on the local backend; prints the best parameters.
demo: $(STAMP)
	cd examples/lightning_classifier && ../../$(PY) train.py -m hydra/sweeper=vertex_vizier \
		hydra.sweeper.goal=maximize hydra.sweeper.metric_id=val_acc \
		hydra.sweeper.max_trial_count=4 hydra.sweeper.parallel_trial_count=2 \
		'model.lr=tag(log,interval(1e-3,3e-1))' optimizer=adam,sgd trainer.max_epochs=3
	@echo "Report: $$(ls -t examples/lightning_classifier/multirun/*/*/report.html 2>/dev/null | head -1)"

# lint and types first (seconds), then the whole suite
test: $(STAMP)
	$(PY) -m ruff check hydra_plugins tests benchmarks tools
	$(PY) -m mypy hydra_plugins
	$(PY) -m pytest

# Not part of the tests: timings side by side with their baselines, see benchmarks/README.md.
bench: $(STAMP)
	benchmarks/run_all.sh $(abspath $(PY))

clean:
	rm -rf $(VENV) build *.egg-info
