# The README's two commands: `make demo` and `make test`. Each installs what it needs first.
.PHONY: install demo test lint bench

install:
	scripts/install.sh

demo: install
	.venv/bin/radwatch demo --out demo-out

test: install
	scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench: install
	.venv/bin/python bench/ingest.py
