"""What the end-to-end tests (tests/e2e) and the benchmark (bench/) share: ports and processes
(`procs`), Envoy configurations (`envoy`), and the stack that scripts/stack.sh starts (`stack`).
Standard library only: `stack` runs with Debian's python3 (which has keystone), and the benchmark needs
nothing the tests' venv does not have."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
