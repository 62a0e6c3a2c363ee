# Two commands: `make lab` (set up and open the course), `make test` (run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888

.PHONY: setup lab test notebooks learner grade benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[lab,test]'
	touch $(STAMP)

lab: setup  ## set up, then open JupyterLab on notebooks/
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Two workers, one torch thread each: two 2-thread processes on two cores run many times slower.
test: setup  ## pytest over tests/ and nbval over every notebook (two processes, one file each at a time)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

notebooks: setup  ## re-execute every notebook in place (store them executed)
	$(BIN)/python -m vit_lesson stamp
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=900 notebooks/*.ipynb
	$(BIN)/python tools/strip_widget_state.py notebooks/*.ipynb

learner: setup  ## write learner versions of the notebooks to learner/
	$(BIN)/python -m vit_lesson learner --out learner

grade: setup  ## grade SUBMISSIONS=folder (one sub-folder of notebooks per learner) into report/
	$(BIN)/python -m vit_lesson grade $(SUBMISSIONS) --out report

benchmarks: setup  ## print the measured tables
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) learner .pytest_cache
