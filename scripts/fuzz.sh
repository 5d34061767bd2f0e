#!/usr/bin/env bash
# The fuzz step (issue #9): every target of fuzz/ (one body per target in fuzz/src/, shared by the
# libFuzzer binaries and a stable replay test), in one of two modes:
#
# - live (nightly toolchain + cargo-fuzz; cargo-fuzz is installed with `cargo install --locked` when
#   missing): builds every target once under AddressSanitizer, then runs each for FUZZ_SECONDS (default
#   20 s) from its committed corpus fuzz/corpus/TARGET (seeds from the tests' inputs and every past
#   finding). A finding is a crash, a panic, an input taking over 10 s (-timeout), one allocation over
#   256 MB (-malloc_limit_mb) or over 2 GB resident (-rss_limit_mb): the step fails and libFuzzer keeps
#   the input in fuzz/artifacts/TARGET/. New inputs the fuzzer finds go to fuzz/target/live-corpus/
#   (not committed: copy the useful ones into fuzz/corpus/TARGET/).
# - replay (no nightly, or FUZZ_MODE=replay): runs every committed input of fuzz/corpus/ through the
#   same bodies on the stable toolchain (`cargo test` in fuzz/, tests/replay.rs), and says in one line
#   that live fuzzing was skipped and why. A committed input that fails fails the step.
#
# Everything builds in fuzz/target (its own workspace), never in the main target/.
#
#   scripts/fuzz.sh                          # every target, 20 s each (the test command's budget)
#   FUZZ_SECONDS=600 scripts/fuzz.sh config  # one target, longer (several: name them)
#   FUZZ_MODE=replay scripts/fuzz.sh         # the stable replay only
# Extra libFuzzer options: FUZZ_ARGS="-jobs=2 -workers=2" (see `-help=1`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR="$PWD/target"
export CARGO_INCREMENTAL=0

seconds=${FUZZ_SECONDS:-20}
mode=${FUZZ_MODE:-live}

# The fuzz crate is outside the workspace, so the test command's `cargo fmt --all` does not see it.
cargo fmt --check || { echo "fuzz: fuzz/ is not formatted (cd fuzz && cargo fmt)"; exit 1; }

replay() {
  echo "fuzz: live fuzzing SKIPPED ($1); replaying every committed input of fuzz/corpus/ on stable instead"
  mkdir -p target
  local log=target/replay.log
  if cargo test --locked --no-default-features -- --nocapture >"$log" 2>&1; then
    echo "fuzz: $(grep -m 1 '^replayed' "$log" || echo 'replay ran'), no finding"
  else
    tail -n 40 "$log"
    echo "fuzz: FINDINGS in the committed corpus (above; the whole log: fuzz/$log)"
    return 1
  fi
}

if [ "$mode" = replay ]; then
  replay "FUZZ_MODE=replay"
  exit
fi
if ! command -v rustup >/dev/null || ! rustup run nightly rustc --version >/dev/null 2>&1; then
  replay "no nightly toolchain: rustup toolchain install nightly"
  exit
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  if ! cargo install --locked cargo-fuzz >/dev/null 2>&1; then
    replay "cargo-fuzz is missing and could not be installed"
    exit
  fi
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets (they share the library; cargo-fuzz's default: optimized, debug assertions,
# AddressSanitizer), then each binary runs as `cargo fuzz run` would run it.
mkdir -p target
start=$SECONDS
cargo +nightly fuzz build >target/build.log 2>&1 || { tail -n 40 target/build.log; exit 1; }
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"
bin_dir="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

failed=()
for t in "${targets[@]}"; do
  [ -d "corpus/$t" ] || { echo "fuzz: no corpus/$t"; failed+=("$t"); continue; }
  mkdir -p "target/live-corpus/$t" "artifacts/$t"
  log="target/live-corpus/$t.log"
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
  if ASAN_OPTIONS=detect_odr_violation=0 "$bin_dir/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 \
    ${FUZZ_ARGS:-} "target/live-corpus/$t" "corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
    echo "fuzz: $t: ${runs:-?} runs in ${seconds} s, ${cov:-cov: ?}, no finding"
  else
    failed+=("$t")
    echo "fuzz: $t: FINDING"
    grep -v '^#[0-9]' "$log" | tail -n 40
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FINDINGS in ${failed[*]} (inputs under fuzz/artifacts/; fix, then keep each as a unit test)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no finding ($((SECONDS - start)) s with the build)"
