"""The real stack of scripts/stack.sh: starting, stopping and reading it."""
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_SH = os.path.join(REPO, "scripts", "stack.sh")


def read_stack(d):
    """The stack's settings, as `stack.sh up` wrote them to DIR/stack.json (the same as stack.env)."""
    with open(os.path.join(d, "stack.json")) as f:
        return json.load(f)


def stack_cmd(*args, timeout=120):
    """Runs `scripts/stack.sh ARGS...` (up, down, ks-stop, ks-start)."""
    return subprocess.run(["bash", STACK_SH, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
