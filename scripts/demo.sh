#!/usr/bin/env bash
# The demo: the Latch emulator, the embedded SQLite store and the real libpam (pamtester in a private mount
# namespace, so the host's /etc/pam.d is never touched). Pairs a user, shows a login allowed, locks the
# latch, shows the same login refused. `scripts/demo.sh pingid`: the same with PingID — a pairing key, the
# phone claims it, a push approved lets in, a push rejected refuses. Run as root on Debian 12 with Rust installed.
set -euo pipefail
MODE=${1:-latch}
case "$MODE" in latch|pingid) ;; *) echo "usage: $0 [latch|pingid]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

need=()
for pkg in build-essential pkg-config libpam0g-dev pamtester curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== building"
cargo build --quiet -p lockserver-module -p lockserver-cli -p lockserver-emulator
bin=$PWD/target/debug

D=$(mktemp -d /tmp/lockserver-demo.XXXXXX)
emu_pid=""
cleanup() { [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT

APP=DemoAppIdDemoAppId01
SECRET=DemoSecretDemoSecretDemoSecretDemoSecret
"$bin/lockserver-emulator" --listen 127.0.0.1:0 --app-id "$APP" --secret "$SECRET" --ready-file "$D/url" >"$D/emulator.log" 2>&1 &
emu_pid=$!
for _ in $(seq 100); do [ -s "$D/url" ] && break; sleep 0.05; done
URL=$(cat "$D/url")
echo "== emulator listening at $URL"

mkdir "$D/pam.d"
printf 'auth required %s/liblockserver.so config=%s/lockserver.conf\naccount required %s/liblockserver.so config=%s/lockserver.conf\n' \
  "$bin" "$D" "$bin" "$D" >"$D/pam.d/lockserver-demo"

login() {
  unshare --mount --propagation private sh -c "mount --bind '$D/pam.d' /etc/pam.d && pamtester lockserver-demo nobody authenticate acct_mgmt" </dev/null
}

umask 077
if [ "$MODE" = pingid ]; then
  # The emulator's PingID account (emulator/README.md).
  cat >"$D/lockserver.conf" <<CONF
service    = "pingid"
fail_mode  = "secure"
unpaired   = "ignore"
timeout_ms = 2000
store      = "sqlite://$D/lockserver.db"

[pingid]
account_id     = "e17f898d-3577-490d-baa7-64ceecf6b8a5"
application_id = "49b9ed37-31ce-488f-9c44-1fe1ed95f756"
token          = "9ac4216d0123456789abcdef01234567"
api_key        = "ZW11bGF0b3ItcGluZ2lkLWFwaS1rZXktMzItYnl0ZXM="
url            = "$URL/pingid"
push_timeout_secs = 10
poll_interval_ms  = 200
CONF
  ctl() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$URL/_emulator/pingid/$1" >/dev/null; }

  echo "== the admin makes a pairing key for user 'nobody'"
  "$bin/lockserver" -c "$D/lockserver.conf" pairing-key create --user nobody | tee "$D/key.txt"
  KEY=$(awk '/^pairing key: /{print $3}' "$D/key.txt")
  "$bin/lockserver" -c "$D/lockserver.conf" pair --user nobody || echo "(not claimed yet, as expected)"

  echo "== the phone enters pairing key $KEY; the admin completes the pairing"
  ctl claim "{\"key\":\"$KEY\"}"
  "$bin/lockserver" -c "$D/lockserver.conf" pairing-key show "$KEY"
  "$bin/lockserver" -c "$D/lockserver.conf" pair --user nobody
  "$bin/lockserver" -c "$D/lockserver.conf" status --user nobody

  echo "== login: the phone approves the push after 1 s"
  ctl plan '{"user":"nobody","action":"approve","after_secs":1}'
  login

  echo "== login: the phone rejects the push"
  ctl plan '{"user":"nobody","action":"reject"}'
  if login; then
    echo "demo FAILED: the login went through with the push rejected" >&2
    exit 1
  fi
  echo "== refused, as it should be. Demo done."
  exit 0
fi

cat >"$D/lockserver.conf" <<CONF
service    = "latch"
fail_mode  = "secure"
unpaired   = "ignore"
timeout_ms = 2000
store      = "sqlite://$D/lockserver.db"

[latch]
app_id = "$APP"
secret = "$SECRET"
url    = "$URL"
CONF

echo "== the phone shows the pairing code DEMO23; the admin pairs user 'nobody' with it"
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"code":"DEMO23"}' "$URL/_emulator/codes" >/dev/null
"$bin/lockserver" -c "$D/lockserver.conf" pair DEMO23 --user nobody
"$bin/lockserver" -c "$D/lockserver.conf" users
ACCOUNT=$("$bin/lockserver" -c "$D/lockserver.conf" users | awk '$1=="nobody"{print $4}')

echo "== login with the latch open"
login

echo "== the user locks the latch in the app"
curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"account\":\"$ACCOUNT\",\"status\":\"off\"}" "$URL/_emulator/latch" >/dev/null
"$bin/lockserver" -c "$D/lockserver.conf" status --user nobody || true

echo "== the same login, latch locked"
if login; then
  echo "demo FAILED: the login went through with the latch locked" >&2
  exit 1
fi
echo "== refused, as it should be. Demo done."
