#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# verify-series.sh SERIESDIR: apply the format-patch series to a fresh copy of
# the pristine kernel, check that it yields exactly the tree we build, and
# compile the changed C files there with the test kernel's configuration.
# Prints KTAP-like result lines.
source "$(dirname "$0")/lib.sh"

series=$(cd "$1" && pwd)
fresh=$CACHE/verify/linux
out=$CACHE/verify/out
rm -rf "$CACHE/verify"
mkdir -p "$fresh" "$out"
n=0
result() {
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
}

# Only the files the series touches need to be fresh; the rest is shared
# read-only with the pristine tree through hard links.
cp -al "$PRISTINE/." "$fresh/"
touched=$(patch_targets "$series"/*.patch)
for f in $touched; do
	if [ -f "$fresh/$f" ]; then
		rm "$fresh/$f"
		cp "$PRISTINE/$f" "$fresh/$f"
	fi
done

ok=1
for p in "$series"/*.patch; do
	if ! (cd "$fresh" && git apply --whitespace=error-all "$p") 2>"$out/apply.err"; then
		sed 's/^/#   /' "$out/apply.err"
		result fail "series:apply:$(basename "$p")" "git apply failed"
		ok=0
		break
	fi
done
[ $ok -eq 1 ] && result ok "series:applies-to-pristine"

if [ $ok -eq 1 ]; then
	# shellcheck disable=SC2086 # one path per word
	compare_trees "$fresh" "$WORK" $touched
	if [ $diffs -eq 0 ]; then
		result ok "series:equals-built-tree"
	else
		result fail "series:equals-built-tree" "$diffs files differ"
	fi

	# Compile what the series changed, in the fresh tree.
	# The Rust helpers compile as one unit, helpers.c, which includes them.
	objs=$(echo "$touched" | grep '\.c$' | grep -v '^tools/' |
		sed -e 's|^rust/helpers/.*\.c$|rust/helpers/helpers.c|' -e 's/\.c$/.o/' | sort -u || true)
	cp "$OUT_BASE/test/.config" "$out/.config"
	# shellcheck disable=SC2086
	if make -s -C "$fresh" O="$out" ARCH=x86_64 LLVM=$LLVM_SUFFIX \
		RUST_LIB_SRC="$TOOLS/rust-src/library" -j"$(nproc)" \
		olddefconfig $objs >"$out/build.log" 2>&1; then
		result ok "series:compiles($(echo $objs | wc -w) objects)"
	else
		tail -20 "$out/build.log" | sed 's/^/#   /'
		result fail "series:compiles" "build failed"
	fi
fi
echo "1..$n"
