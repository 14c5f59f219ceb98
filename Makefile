# ispbench: two commands do all the set-up.
#   make test   create .venv if missing, install, lint (ruff), run the test suite (not the slow tests)
#   make book   create .venv if missing, install, execute every notebook with the default
#               profile through papermill (cached), write the status page, build the HTML book
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= embedded
# notebooks `make book` runs at once (each kernel gets nproc/BOOK_JOBS threads); 1 runs them in turn
BOOK_JOBS ?= 2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ispbench-installed

# Nothing reaches a model hub or GitHub at run time (see README, "Offline").
export YOLO_OFFLINE := 1
export HF_HUB_OFFLINE := 1
# Headless matplotlib for the tests and the benchmark only; the book's notebook kernels draw their
# figures inline whatever MPLBACKEND says (ispbench run sets it in each kernel's environment).
test test-all bench: export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: install lint test test-all book bench lock clean-book check-book

# --no-cache-dir: the CUDA build of torch is several GB; a second copy in pip's cache has filled a
# CI machine's disk before.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -c requirements.lock -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name ispbench --display-name "Python (ispbench)" > /dev/null
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check ispbench tests

test: lint
	$(PY) -m pytest -m "not slow" -q --timeout 600

test-all: $(STAMP)
	$(PY) -m pytest -q --timeout 3600

book: $(STAMP)
	$(PY) -m ispbench run --profile $(PROFILE) --jobs $(BOOK_JOBS) --publish book/executed
	$(PY) -m ispbench report status --profile $(PROFILE) --out book/status.md
	$(VENV)/bin/jupyter-book build . -n -W --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

# Open every page of _build/html (make book first) in headless Chromium (apt-get install -y chromium
# chromium-driver): broken links/images, tables wider than the column, result pages without a table,
# JavaScript errors. BOOK_CHECK_ALLOW=.ci/book-check-allow.txt accepts the known failures listed there.
BOOK_CHECK_ALLOW ?=
check-book: $(STAMP)
	$(PY) -m ispbench.book_check --html _build/html $(if $(BOOK_CHECK_ALLOW),--allow $(BOOK_CHECK_ALLOW))

bench: $(STAMP)
	$(PY) -m ispbench bench ops --profile $(PROFILE)
	$(PY) -m ispbench bench tune

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^ispbench' > requirements.lock.new
	@# the optional [vlm] extra is not installed here: keep its hand-made pins
	@grep -E '^(transformers|accelerate)==' requirements.lock | while read -r pin; do \
	   grep -q -i "^$${pin%%==*}==" requirements.lock.new || echo "$$pin" >> requirements.lock.new; done
	@sort -f -o requirements.lock.new requirements.lock.new
	@{ echo "# Exact versions ispbench is tested with (Python 3.11, Linux x86_64), used as pip constraints by the Makefile."; \
	   echo "# Regenerate after changing pyproject.toml: make lock"; cat requirements.lock.new; } > requirements.lock
	@rm requirements.lock.new

clean-book:
	rm -rf _build book/executed book/status.md
