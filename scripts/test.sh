#!/usr/bin/env bash
# The test command (what CI runs through .ci/run). On a fresh Debian 12 machine, as root, with Rust
# installed: installs the apt packages the tests need, then formatting, lints, build, every test of the
# workspace, and a check that the committed C header still matches the code. Runs every step, prints a
# summary, and exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the tests need from apt, in one place.
APT_PACKAGES=(build-essential pkg-config libpam0g-dev pamtester oathtool valgrind openssh-server openssh-client python3-paramiko sudo go-md2man man-db
  # the Debian packages (tests/deb_*.rs): make deb, lintian, the Debian 12 root, the bash completion
  debhelper lintian mmdebstrap bash-completion)

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
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The committed header, before anything builds (build.rs compares against it).
header=include/lockserver.h
header_before=""
if [ -f "$header" ]; then
  header_before=$(mktemp)
  trap 'rm -f "$header_before"' EXIT
  cp "$header" "$header_before"
fi

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
  cargo test --workspace --no-fail-fast 2>&1 | tee "$test_log"
}
step "tests" run_tests
step "header" header_unchanged

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
