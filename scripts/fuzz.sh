#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 20 s) from its
# seed corpus in fuzz/seeds/TARGET (inputs shaped like the tests' configs, dictionaries and answers),
# and fails if any target finds a crash, a panic, a leak or a timeout (libFuzzer writes the input to
# fuzz/artifacts/TARGET/). New inputs the fuzzer finds go to fuzz/corpus/TARGET (not committed).
# A finding is fixed in the library and kept as a unit test there.
#
# Needs the nightly toolchain (cargo-fuzz uses -Zsanitizer=address). Where nightly is missing, it says so
# in one line and succeeds: the rest of the test command does not depend on it. cargo-fuzz itself is
# installed (`cargo install cargo-fuzz`) when missing.
#
#   scripts/fuzz.sh                 # every target, 20 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh config dictionary
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-20}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED — no nightly toolchain (rustup toolchain install nightly); the fuzz targets did not run"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets (they share the library).
cargo +nightly fuzz build >/dev/null

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${seconds} s"
  # -timeout: one input taking over 10 s is a finding (every call has a deadline well below it).
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"corpus/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 40 "corpus/$t.log"
  else
    grep -E "^stat::number_of_executed_units|^Done" "corpus/$t.log" | tr '\n' ' '
    echo
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FINDINGS in ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no finding"
