"""Speed and memory benchmarks for SecondLook, with the project's targets.

One command: `make bench` (= `.venv/bin/python -m benchmarks.run`). It prints a table (target, measured value,
PASS/MISS) and writes every raw number plus machine information to `benchmarks/results/latest.json`
(git-ignored). See `python -m benchmarks.run --help` for `--quick`, `--models`, `--sections` and `--out`.

Modules: `threshold` (operating-point updates), `models` (single-image latency and batch throughput per bundled
model), `memory_probe` (resident memory with every model loaded, run in a fresh process), `app_start` (Streamlit
start-up measured in a real headless Chromium), `common` (timing, machine info, test images), `run` (the CLI).
Timing assertions live here, never in the unit tests.
"""
