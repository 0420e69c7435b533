#!/usr/bin/env bash
# bench/run.sh - the benchmark (`make bench`; see bench/README.md).
#   1. builds the no-op proxy-wasm filter (bench/noop) and installs Aetos into bench/.aetos-venv,
#   2. starts the real stack (scripts/stack.sh up: Keystone, Prometheus with the demo data) in a temp dir,
#   3. runs bench/bench.py: its own Envoys, Aetos, wrk; writes docs/benchmark.{md,svg,json}, prints the table,
#   4. always stops everything it started and removes the temp dir.
# Knobs (environment): BENCH_DURATION (s per run, default 5), BENCH_ROUNDS (5), BENCH_CONNECTIONS (16),
# BENCH_NEW_TOKENS (new credentials per round, 150), BENCH_MEMORY_TOKENS (100000), BENCH_STARTS (5),
# AETOS_CANDIDATES (gunicorn settings tried for Aetos, class:workers:threads,..., the best kept;
# default sync:2:1,sync:3:1,sync:4:1,sync:8:1,gthread:4:4), BENCH_OUT (docs), BENCH_WRITE (1: the remote write
# workload and the native timing of the same work; 0: neither, and no write section in the filter's configuration),
# BENCH_WRITE_BATCHES (distinct batches, 64), BENCH_NATIVE_SECONDS (criterion's measurement time per round, 3),
# BENCH_WASM (the filter's module, default target/wasm32-wasip1/release/keystone_prom_wasm.wasm); for development,
# BENCH_ONLY (matrix groups, e.g. syn:dashboard,syn:unique,syn:write) and BENCH_PHASES (matrix,newtokens,memory,startup).
# CARGO_TARGET_DIR, when set, is where the no-op filter and bench/stages are built (else in their own target/).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
WASM=${BENCH_WASM:-$ROOT/target/wasm32-wasip1/release/keystone_prom_wasm.wasm}
NOOP_WASM=${CARGO_TARGET_DIR:-$ROOT/bench/noop/target}/wasm32-wasip1/release/bench_noop.wasm
STAGES_TARGET=${CARGO_TARGET_DIR:-$ROOT/bench/stages/target}
WRITE=${BENCH_WRITE:-1}
AETOS_VENV=$ROOT/bench/.aetos-venv
AETOS_PINS=(aetos==3.0.0 gunicorn==27.0.1)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -f "$WASM" ] || { log "ERROR: $WASM missing: run 'make build' (or 'make bench')"; exit 1; }
[ -x "$ROOT/.venv/bin/envoy" ] || { log "ERROR: .venv/bin/envoy missing: run 'make deps'"; exit 1; }
command -v wrk >/dev/null || { log "ERROR: wrk missing: run 'make deps' (apt wrk)"; exit 1; }
command -v taskset >/dev/null || { log "ERROR: taskset missing (util-linux)"; exit 1; }
[ "$(nproc)" -ge 2 ] || { log "ERROR: needs 2 CPUs (the Envoy under test on CPU 0, the load on CPU 1)"; exit 1; }

log "building the no-op Wasm filter (bench/noop)"
cargo build -q --release --target wasm32-wasip1 --manifest-path bench/noop/Cargo.toml
[ -f "$NOOP_WASM" ] || { log "ERROR: $NOOP_WASM not built"; exit 1; }

WRITE_GEN= STAGES_BENCH=
if [ "$WRITE" != 0 ]; then
  # the batches (write_batches) and the native timing (criterion's write/decode_enforce_encode), both in the
  # bench profile (the filter's release profile), so that the filter's crate is compiled once for both
  log "building bench/stages (remote write batches and the native stage benchmark)"
  cargo build -q --profile bench --manifest-path bench/stages/Cargo.toml --example write_batches
  WRITE_GEN=$STAGES_TARGET/release/examples/write_batches
  STAGES_BENCH=$(cargo bench -q --no-run --manifest-path bench/stages/Cargo.toml --bench stages --message-format=json |
    $PY -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "stages" and m.get("executable"):
        print(m["executable"])')
  [ -x "$WRITE_GEN" ] && [ -x "$STAGES_BENCH" ] || { log "ERROR: bench/stages not built ($WRITE_GEN, $STAGES_BENCH)"; exit 1; }
fi

if ! "$AETOS_VENV/bin/python" -c 'import aetos, keystonemiddleware, gunicorn' 2>/dev/null; then
  log "installing ${AETOS_PINS[*]} into $AETOS_VENV (Debian's python3; once)"
  rm -rf "$AETOS_VENV"
  $PY -m venv "$AETOS_VENV"
  "$AETOS_VENV/bin/pip" install -q --disable-pip-version-check "${AETOS_PINS[@]}"
fi

WORK=$(mktemp -d -t kpw-bench.XXXXXX)
BENCH_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # interrupted: bench.py stops what it started when told to (SIGTERM), then exits
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  # the safety net: whatever bench.py started and left (its pids, one by one), then the stack
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; }
    done < "$WORK/pids"
  fi
  [ -d "$WORK/stack" ] && bash "$ROOT/scripts/stack.sh" down "$WORK/stack" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting Keystone + Prometheus (scripts/stack.sh up)"
ENVOY_CONCURRENCY=1 ENVOY_LOG_LEVEL=warning bash scripts/stack.sh up "$WORK/stack" > "$WORK/stack-up.log" 2>&1 || {
  tail -30 "$WORK/stack-up.log" >&2; log "ERROR: stack did not start"; exit 1; }

# in the background and waited for, so that a signal reaches the trap at once (bash runs traps only
# between commands)
$PY bench/bench.py --stack "$WORK/stack" --work "$WORK" --wasm "$WASM" --noop-wasm "$NOOP_WASM" \
  --aetos-venv "$AETOS_VENV" --out "${BENCH_OUT:-$ROOT/docs}" \
  --duration "${BENCH_DURATION:-5}" --rounds "${BENCH_ROUNDS:-5}" --connections "${BENCH_CONNECTIONS:-16}" \
  --new-tokens "${BENCH_NEW_TOKENS:-150}" --memory-tokens "${BENCH_MEMORY_TOKENS:-100000}" \
  --starts "${BENCH_STARTS:-5}" --aetos-candidates "${AETOS_CANDIDATES:-sync:2:1,sync:3:1,sync:4:1,sync:8:1,gthread:4:4}" \
  --write "$WRITE" --write-gen "$WRITE_GEN" --stages-bench "$STAGES_BENCH" \
  --write-batches "${BENCH_WRITE_BATCHES:-64}" --native-seconds "${BENCH_NATIVE_SECONDS:-3}" \
  --only "${BENCH_ONLY:-}" --phases "${BENCH_PHASES:-matrix,newtokens,memory,startup}" &
BENCH_PID=$!
wait "$BENCH_PID"
BENCH_PID=
log "wrote ${BENCH_OUT:-$ROOT/docs}/benchmark.md, benchmark.svg, benchmark.json"
