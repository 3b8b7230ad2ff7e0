#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# abi-check.sh FLAVOUR: one KTAP-like result line per structure of the
# user-space ABI (linux/blksnap.h, linux/blk-filter.h), checking that a
# 32-bit (i386) program sees the same size and field offsets as a 64-bit
# one.  That is what lets blksnap and the filter ioctls go without a
# compat_ioctl: the kernel's default passes 32-bit calls on unchanged, and
# the ioctl numbers, which encode the sizes, are the same too.
# Only the alignment of a whole structure may differ (4 vs 8 bytes).
source "$(dirname "$0")/lib.sh"

flavour=$1
kmake "$flavour" headers_install >/dev/null
hdr=$OUT_BASE/$flavour/usr/include
headers=(linux/blksnap.h linux/blk-filter.h)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every structure the headers define, used once so that clang lays it out.
mapfile -t structs < <(cd "$hdr" && sed -n 's/^struct \([a-z0-9_]*\) {.*/\1/p' "${headers[@]}")
{
	printf '#include <%s>\n' "${headers[@]}"
	for s in "${structs[@]}"; do echo "int size_of_$s = sizeof(struct $s);"; done
} >"$tmp/layout.c"

# Size, data size and field offsets of each structure, one line each.
layouts() { # bits
	set -o pipefail
	"clang$LLVM_SUFFIX" -m"$1" -nostdinc -isystem "$hdr" \
		-isystem "$("clang$LLVM_SUFFIX" -print-resource-dir)/include" \
		-Xclang -fdump-record-layouts-simple -fsyntax-only "$tmp/layout.c" |
		awk '/^Type: struct / { name = $3 }
		     /^  (Size|DataSize|FieldOffsets):/ { sub(/^  /, ""); lay[name] = lay[name] " " $0 }
		     END { for (n in lay) print n lay[n] }' | sort
}

n=0
if ! layouts 32 >"$tmp/32" || ! layouts 64 >"$tmp/64"; then
	echo "not ok 1 abi:layouts # clang could not lay the headers out"
	echo "1..1"
	exit 0
fi
for s in "${structs[@]}"; do
	n=$((n + 1))
	a=$(grep "^$s " "$tmp/32" || true)
	b=$(grep "^$s " "$tmp/64" || true)
	if [ -n "$b" ] && [ "$a" = "$b" ]; then
		echo "ok $n abi:same-layout-32-64:$s"
	else
		echo "#   i386:   $a"
		echo "#   x86_64: $b"
		echo "not ok $n abi:same-layout-32-64:$s # differs between 32 and 64 bits"
	fi
done
# A header that lost its structures would pass the loop above vacuously.
n=$((n + 1))
if [ ${#structs[@]} -ge 17 ]; then
	echo "ok $n abi:structures-found"
else
	echo "not ok $n abi:structures-found # ${#structs[@]} of the 17 ABI structures"
fi
echo "1..$n"
