#!/usr/bin/env bash
# The test command (what CI runs through .ci/run). On a fresh Debian 12 machine, as root, with Rust
# installed: installs the apt packages the tests need, then formatting, lints, build, every test of the
# workspace, a check that the committed C header still matches the code, a check that the committed
# table of hostile cases (docs/security-cases.md) matches what the tests recorded, and the fuzz targets
# for a bounded time (scripts/fuzz.sh; a corpus replay where nightly is missing). Runs every step, prints a
# summary, and exits non-zero if any step failed. The PostgreSQL store tests get a private cluster
# (initdb + pg_ctl as `nobody`, on a free loopback port, in a temp dir), stopped and removed on exit
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the tests need from apt, in one place.
APT_PACKAGES=(build-essential pkg-config libpam0g-dev pamtester oathtool valgrind openssh-server openssh-client python3-paramiko sudo go-md2man man-db
  # the C tests' sanitizer build (tests/capi.rs): ASan and UBSan runtimes (gcc brings them; named
  # because the tests use them directly)
  libasan8 libubsan1
  # the benchmark's HTTPS case reads the system CA bundle
  ca-certificates
  # the PostgreSQL store's tests: a private cluster, and PgBouncer
  postgresql pgbouncer
  # the Debian packages (tests/deb_*.rs): make deb, lintian, the Debian 12 root, the completions in bash, zsh and fish
  debhelper lintian mmdebstrap bash-completion zsh fish
  # the proxy tests (tests/proxy.rs): a real HTTP CONNECT proxy
  tinyproxy)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing packages: ${missing[*]}; run as root, or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts a package's service on install (postgresql's main cluster, pgbouncer): the tests start
  # their own, so forbid service starts during the install and nothing is left running.
  policy_made=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  install_rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || install_rc=$?
  [ -n "$policy_made" ] && rm -f /usr/sbin/policy-rc.d
  [ "$install_rc" -eq 0 ] || exit "$install_rc"
fi

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# Everything started or made here goes on exit, whatever happened.
header_before=""
pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ] && [ -d "$pg_dir" ]; then
    if [ -f "$pg_dir/pgbouncer.pid" ]; then
      kill "$(cat "$pg_dir/pgbouncer.pid")" 2>/dev/null || true
    fi
    runuser -u nobody -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
  [ -n "$header_before" ] && rm -f "$header_before"
  return 0
}
trap cleanup EXIT
# A signal becomes an exit, so the EXIT trap runs then too.
trap 'exit 130' INT TERM

# The committed header, before anything builds (build.rs compares against it).
header=include/lockserver.h
if [ -f "$header" ]; then
  header_before=$(mktemp)
  cp "$header" "$header_before"
fi

# A private PostgreSQL cluster for the store tests: role `lockserver` (password auth over TCP, may
# create a database per test), database `lockserver`. The tests read the URL and password file below.
PG_BIN=/usr/lib/postgresql/15/bin
start_postgres() {
  pg_dir=$(mktemp -d /tmp/lockserver-test-pg.XXXXXX)
  chown nobody:nogroup "$pg_dir"
  local port password
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # Read by the tests (root), not by the server.
  (umask 077 && printf '%s\n' "$password" >"$pg_dir/password")
  runuser -u nobody -- "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log"; return 1; }
  runuser -u nobody -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pg_dir -c fsync=off -c max_connections=300" start >/dev/null \
    || { cat "$pg_dir/server.log"; return 1; }
  runuser -u nobody -- psql -X -q -h "$pg_dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE lockserver LOGIN CREATEDB PASSWORD '$password'" -c "CREATE DATABASE lockserver OWNER lockserver"
  export LOCKSERVER_TEST_PG_URL="postgres://lockserver@127.0.0.1:$port/lockserver?sslmode=disable"
  export LOCKSERVER_TEST_PG_PASSWORD_FILE="$pg_dir/password"
  echo "PostgreSQL test cluster on 127.0.0.1:$port ($pg_dir)"
  start_pgbouncer "$port" "$password"
}

# PgBouncer in transaction-pooling mode in front of the test cluster (every database, the role
# `lockserver`), as a fleet deploys it; the tests read its port.
start_pgbouncer() {
  local pg_port=$1 password=$2 port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  (umask 077 && printf '"lockserver" "%s"\n' "$password" >"$pg_dir/userlist.txt")
  cat >"$pg_dir/pgbouncer.ini" <<EOF_INI
[databases]
* = host=127.0.0.1 port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $pg_dir/userlist.txt
pool_mode = transaction
max_client_conn = 400
default_pool_size = 10
logfile = $pg_dir/pgbouncer.log
pidfile = $pg_dir/pgbouncer.pid
EOF_INI
  chown nobody:nogroup "$pg_dir/userlist.txt" "$pg_dir/pgbouncer.ini"
  runuser -u nobody -- /usr/sbin/pgbouncer -d -q "$pg_dir/pgbouncer.ini" || { cat "$pg_dir/pgbouncer.log"; return 1; }
  export LOCKSERVER_TEST_PGBOUNCER_PORT=$port
  echo "PgBouncer (transaction pooling) on 127.0.0.1:$port"
}

results=()
failed=0
step() {
  local name=$1
  shift
  echo
  echo "== $name: $*"
  local start=$SECONDS
  if "$@"; then
    results+=("PASS  $name ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $name ($((SECONDS - start)) s): $*")
    failed=1
  fi
}

header_unchanged() {
  if [ -z "$header_before" ]; then
    echo "no $header: nothing to check"
    return 0
  fi
  if ! cmp -s "$header_before" "$header"; then
    echo "$header changed during the build:"
    diff -u "$header_before" "$header" || true
    return 1
  fi
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && git ls-files --error-unmatch "$header" >/dev/null 2>&1; then
    git --no-pager diff --exit-code -- include/
  fi
}

step "format" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "build" cargo build --workspace
test_log=$(mktemp)
run_tests() {
  # The hostile cases the tests see are recorded afresh each run (docs/security-cases.md).
  rm -rf target/debug/security-cases
  cargo test --workspace --no-fail-fast 2>&1 | tee "$test_log"
}
step "postgres" start_postgres
step "tests" run_tests
step "header" header_unchanged
# The benchmark in its short mode: a few iterations, figures not meaningful; it only has to run, so
# it cannot rot (it prints figures and asserts nothing but that its logins succeed).
step "benchmark runs (quick)" cargo bench --bench login -- --quick

# The table of hostile cases, from what the tests recorded: the committed one must match.
security_cases() {
  scripts/security-cases.sh && git --no-pager diff --exit-code -- docs/security-cases.md
}
step "security cases" security_cases

# The PAM conversation trampoline's tests play libpam's side (they build message arrays and free the
# answers with free()); valgrind checks that no answer leaks or is freed twice, on every path.
conversation_under_valgrind() {
  local bin
  bin=$(cargo test -p pam-app --lib --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
  [ -n "$bin" ] || { echo "no pam-app test binary"; return 1; }
  valgrind --quiet --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite,indirect --error-exitcode=1 "$bin" --test-threads=1
}
step "conversation under valgrind" conversation_under_valgrind

# The fuzz targets (fuzz/, scripts/fuzz.sh): with nightly, each target for FUZZ_SECONDS (default 20 s) after
# one build, under 5 minutes on 2 cores; without nightly, every committed input replayed on stable, with
# one line saying live fuzzing was skipped. A finding fails the step.
step "fuzz" scripts/fuzz.sh

echo
echo "== summary"
printf '%s\n' "${results[@]}"

if [ "$failed" -ne 0 ]; then
  echo "== FAILED"
else
  echo "== all passed"
fi
# One plain closing line for the whole run: every cargo test binary's counts added up.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$test_log"
rm -f "$test_log"
exit "$failed"
