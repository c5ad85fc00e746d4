# The two commands of the README's quick start.
.PHONY: demo test setup lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python -m layerkit.tour

test: setup
	.venv/bin/ruff check layerkit tests benchmarks
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check layerkit tests benchmarks

bench: setup
	.venv/bin/python -m benchmarks.load_bench
