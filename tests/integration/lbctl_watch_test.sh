#!/usr/bin/env bash
# Integration test: `lbctl stats --watch` against lbd's control core and API
# (control_server: no dataplane), through a restart of the server: it draws frames while
# lbd answers, says so while it does not, and goes on once it answers again; it refuses
# to start without an answer.
#
# Usage: lbctl_watch_test.sh BUILD_DIR. No namespaces; removes what it made.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
DIR=$(mktemp -d /tmp/lb-watch-XXXXXX)
SOCK=$DIR/api.sock
source "$(dirname "$0")/topology.sh"
server_pid=
finish() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$DIR"
}
trap finish EXIT
lbctl() { "$BUILD/tools/lbctl" --socket "$SOCK" --timeout 1 "$@"; }
start_server() {
  "$BUILD/tests/integration/control_server" "$SOCK" >>"$DIR/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
  return 1
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=; }

lbctl stats --watch --count 1 >/dev/null 2>"$DIR/refused.err"
rc=$?
check "without lbd, --watch does not start (exit status 5, got $rc)" test "$rc" -eq 5

check "the control server starts" start_server
lbctl service add 10.1.0.10:53/udp --backend 10.0.0.5 >/dev/null
lbctl stats --watch --interval 0.5 --count 30 >"$DIR/watch.out" 2>"$DIR/watch.err" &
watch_pid=$!
sleep 1.3
stop_server
sleep 1.5
start_server
lbctl service add 10.1.0.11:53/udp --backend 10.0.0.6 >/dev/null
wait "$watch_pid"
rc=$?
frames=$(grep -c '^lbd at ' "$DIR/watch.out")
check "--watch ran its 30 frames through the restart and exited 0 (exit status $rc, $frames frames)" \
  test "$rc" -eq 0 -a "$frames" -eq 30
check "frames with the service's row before the restart" grep -q '^10\.1\.0\.10:53/udp ' "$DIR/watch.out"
check "frames that say lbd does not answer" grep -q ': no answer (' "$DIR/watch.out"
check "a frame when it answers again" grep -q ': answering again; rates from the next frame' "$DIR/watch.out"
check "rate frames again after it, with the restarted server's service" \
  sh -c "sed -n '/answering again/,\$p' '$DIR/watch.out' | grep -q '^10\.1\.0\.11:53/udp '"
check "nothing on stderr once started (the frames say it)" test ! -s "$DIR/watch.err"
check_summary
