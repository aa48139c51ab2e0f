# The README's two commands: `make demo` and `make test`. Each installs what it needs first.
.PHONY: install demo test test-fast lint bench

install:
	scripts/install.sh

demo: install
	.venv/bin/radwatch demo --out demo-out

# Everything: lint (as `make lint`), then the whole suite, slow tests included.
test: install
	scripts/test.sh

# The fast tier: lint, then the suite without the tests marked `slow` (pyproject.toml).
test-fast: install
	scripts/test.sh -m "not slow"

# Style, formatting, types and the import contracts (pyproject.toml [tool.importlinter]).
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports --no-logo

bench: install
	.venv/bin/python bench/ingest.py
