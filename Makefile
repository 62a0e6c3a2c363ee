# Two commands: `make lab` (set up and open the course), `make test` (run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888

.PHONY: setup lab test test-portable notebooks learner grade benchmarks clean

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

# The notebooks again as another CPU would run them: PyTorch's, MKL's and oneDNN's kernels forced to
# the plain instruction set, and two threads; on an AVX-512 machine also as an AVX2 machine. A stored
# output that depends on rounding fails here. (CI runs this after `make test`.)
NOTEBOOKS ?= notebooks
PORTABLE := $(BIN)/python -m pytest -p no:cacheprovider $(NOTEBOOKS) $(PYTEST_ARGS)
test-portable: setup  ## nbval over every notebook with other CPU kernels and thread counts
	ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=2 $(PORTABLE)
	if grep -qw avx512f /proc/cpuinfo; then \
	  ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 $(PORTABLE) -n 2 --dist loadfile; fi

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
