#!/usr/bin/env bash
# The app's end-to-end test: Xvfb + tauri-driver (WebKitWebDriver) + the
# WebDriver test in app.e2e.mjs.
#   tests/e2e/run.sh APP_BINARY TAURI_DRIVER OUT_DIR
# Screenshots and logs land in OUT_DIR; the app's runs in OUT_DIR/runs.
set -euo pipefail
APP=$(realpath "$1")
DRIVER=$(realpath "$2")
OUT=$(realpath -m "$3")
rm -rf "$OUT" && mkdir -p "$OUT/runs"

export TUNESMITH_RUNS_DIR="$OUT/runs"
# WebKitGTK on a virtual X server: no GPU, no DMA-BUF.
export WEBKIT_DISABLE_DMABUF_RENDERER=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 LIBGL_ALWAYS_SOFTWARE=1
export NO_AT_BRIDGE=1

display=99
while [ -e /tmp/.X11-unix/X$display ] || [ -e /tmp/.X$display-lock ]; do display=$((display + 1)); done
export DISPLAY=:$display

# Own process groups (setsid), killed whole on exit: the driver starts
# WebKitWebDriver, which starts the app.
setsid Xvfb "$DISPLAY" -screen 0 1280x820x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
xvfb=$!
driver=
cleanup() {
  [ -n "$driver" ] && kill -- -"$driver" 2>/dev/null || true
  kill -- -"$xvfb" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do [ -e /tmp/.X11-unix/X$display ] && break; sleep 0.1; done

setsid dbus-run-session -- "$DRIVER" --port 4444 --native-port 4445 \
  --native-driver "$(command -v WebKitWebDriver)" >"$OUT/driver.log" 2>&1 &
driver=$!
for _ in $(seq 100); do
  curl -s http://127.0.0.1:4444/status >/dev/null 2>&1 && break
  sleep 0.1
done

E2E_APP="$APP" E2E_OUT="$OUT" node --test --test-reporter=spec "$(dirname "$0")/app.e2e.mjs"
