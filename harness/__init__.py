"""What the end-to-end tests (tests/e2e) and the benchmark (bench/) share: ports and processes
(`procs`), Envoy configurations (`envoy`), and the stack that scripts/stack.sh starts (`stack`).
Standard library only, so that the benchmark needs nothing the tests' venv does not have."""
