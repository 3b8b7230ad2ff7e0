#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# tool.sh build|test: the blksnap command-line tool (tools/blksnap).
#   build  a static x86_64 binary for the guest; prints its path
#   test   its unit tests, the layout check against the uapi header,
#          clippy, rustfmt and the static build, as KTAP-like lines
# Cargo builds outside the repository, in $CACHE/cargo.
source "$(dirname "$0")/lib.sh"

TOOL_DIR=$REPO/tools/blksnap
TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=$CACHE/cargo
TOOL_BIN=$CARGO_TARGET_DIR/$TARGET/release/blksnap

cargo_() { (cd "$TOOL_DIR" && nice -n 10 cargo "$@"); }

build() {
	# crt-static needs an explicit --target, or build scripts and proc
	# macros (clap's derive) would be linked statically too.
	RUSTFLAGS="-C target-feature=+crt-static" \
		cargo_ build -q --release --locked --target $TARGET >&2 || return 1
	# static-pie (glibc's default for crt-static) and plain static are both fine.
	file -L "$TOOL_BIN" | grep -q 'static.* linked' ||
		{ log "tool: $TOOL_BIN is not static: $(file -L "$TOOL_BIN")"; return 1; }
	echo "$TOOL_BIN"
}

n=0
result() { # status name [detail]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
}

run_tests() {
	local out rc line
	set +e
	out=$(cargo_ test --locked 2>&1)
	rc=$?
	set -e
	# One result per test: "test NAME ... ok|FAILED|ignored".
	while IFS= read -r line; do
		case $line in
		"test "*" ... ok") line=${line#test } && result ok "tool:test:${line% ... ok}" ;;
		"test "*" ... FAILED") line=${line#test } && result fail "tool:test:${line% ... FAILED}" failed ;;
		esac
	done <<<"$out"
	if [ $rc -eq 0 ]; then
		result ok "tool:cargo-test"
	else
		echo "$out" | grep -v '^test .* \.\.\. ok$' | tail -40 | sed 's/^/#   /'
		result fail "tool:cargo-test" "cargo test exited $rc"
	fi
	if out=$(cargo_ clippy --locked --all-targets -- -D warnings 2>&1); then
		result ok "tool:clippy"
	else
		echo "$out" | tail -30 | sed 's/^/#   /'
		result fail "tool:clippy" "clippy warnings"
	fi
	if out=$(cargo_ fmt --check 2>&1); then
		result ok "tool:rustfmt"
	else
		echo "$out" | head -30 | sed 's/^/#   /'
		result fail "tool:rustfmt" "cargo fmt would reformat"
	fi
	if out=$(build 2>&1); then
		result ok "tool:static-build"
	else
		echo "$out" | tail -20 | sed 's/^/#   /'
		result fail "tool:static-build" "see above"
	fi
	echo "1..$n"
}

case ${1:-} in
build) build ;;
test) run_tests ;;
*) die "usage: tool.sh build|test" ;;
esac
