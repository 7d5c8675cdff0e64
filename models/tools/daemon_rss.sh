#!/bin/sh
# Peak RSS (VmHWM) of the real daemon: `emonet run` on the bundled demo config (replayed sample
# frames at 30 fps, embedded MQTT broker), sampled after SECONDS seconds, then stopped.
#   sh models/tools/daemon_rss.sh [SECONDS] [CLASSIFIER.onnx]
set -eu
secs=${1:-20}
bin=${EMONET_BIN:-target/release/emonet}
export EMONET__REPLAY__FPS=30
[ $# -ge 2 ] && export EMONET__CLASSIFIER__MODEL="$(realpath "$2")"
"$bin" run --config samples/demo.toml --log-level warn >/dev/null 2>&1 &
pid=$!
sleep "$secs"
grep -E 'VmHWM|VmRSS|Threads' "/proc/$pid/status" | tr -s ' \t' ' '
kill -TERM "$pid"
wait "$pid" || true
