# SPDX-License-Identifier: GPL-2.0
# Shared settings for the blksnap-rs harness: pinned inputs and cache layout.
# Everything downloaded or built lives under $CACHE, never in the repository.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BLKSNAP_CACHE:-/var/cache/blksnap-rs}

# The kernel we target, and the Rust source matching the machine's rustc.
KERNEL_PKG=linux-source-7.3
KERNEL_VERSION_PIN=7.3.4-1~bpo13+1
KERNEL_SUITE=trixie-backports

PRISTINE=$CACHE/pristine/linux        # extracted, never modified
WORK=$CACHE/work/linux                # pristine + our overlay and series
OUT_BASE=$CACHE/out                   # O= build directories, one per flavour
TOOLS=$CACHE/tools                    # bindgen and the Rust library source

LLVM_SUFFIX=-19
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
export PATH=$TOOLS/cargo/bin:$HOME/.cargo/bin:$PATH

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Arguments every kernel make invocation needs.
kmake_args() {
	local flavour=$1
	echo "-C $WORK O=$OUT_BASE/$flavour ARCH=x86_64 LLVM=$LLVM_SUFFIX" \
	     "RUST_LIB_SRC=$TOOLS/rust-src/library" \
	     "BINDGEN=$TOOLS/cargo/bin/bindgen -j$(nproc)"
}

kmake() {
	local flavour=$1
	shift
	# shellcheck disable=SC2046
	make -s $(kmake_args "$flavour") "$@"
}
