# The two commands a new user needs (each creates/reuses .venv in the repo root):
#   make demo    set up, then run the main job on the embedded default model
#   make test    set up (with test tools), then run the test suite
.PHONY: demo test test-slow setup clean
PYTEST_ARGS ?=

demo:
	@bash scripts/setup.sh
	.venv/bin/emguard demo --output runs/demo

test:
	@bash scripts/setup.sh dev
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

test-slow:
	@bash scripts/setup.sh dev
	EMGUARD_TEST_CACHE=$(CURDIR)/.cache/emguard .venv/bin/python -m pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf .venv runs .pytest_cache
