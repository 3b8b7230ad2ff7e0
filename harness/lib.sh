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

# The patch file names of a series file (default patches/series), in
# order; comments and blank lines skipped.
series_patches() {
	grep -v '^\s*\(#\|$\)' "${1:-$REPO/patches/series}" | awk '{print $1}'
}

# The overlay files a patch file names in its "Overlay:" header (empty for
# "(none)"), as one line of paths.
patch_overlay() {
	local overlay
	overlay=$(sed -n 's/^Overlay://p;/^---$/q' "$1" | head -n1)
	[ "$overlay" = " (none)" ] || echo "$overlay"
}

# The upstream files the given patch files edit, sorted, each once.
patch_targets() {
	[ $# -gt 0 ] || return 0 # sed without files would read stdin
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$@" | sort -u
}

# Files of the repository (tracked, or new and not ignored) matching the
# pathspecs, less those deleted from the working tree.  (An "if", not "&&":
# a deleted last name must not fail the pipeline under pipefail.)
repo_files() {
	(cd "$REPO" && git ls-files --cached --others --exclude-standard -- "$@" |
		while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done)
}

# Overlay files: everything in the repository at a kernel path, except the
# blksnap tool: a cargo project built on its own (harness/tool.sh), not part
# of the kernel tree or the patch series.
TOOL_PATHSPEC=':(exclude)tools/blksnap'
overlay_files() {
	repo_files block include drivers rust Documentation tools scripts samples "$TOOL_PATHSPEC"
}

# Logs each of the files named after the two trees that differs between
# tree $1 and tree $2, and leaves their number in $diffs.
compare_trees() {
	local a=$1 b=$2 f
	shift 2
	diffs=0
	for f in "$@"; do
		cmp -s "$a/$f" "$b/$f" || { echo "#   differs: $f"; diffs=$((diffs + 1)); }
	done
}
