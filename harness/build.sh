#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# build.sh FLAVOUR: configure (tinyconfig + fragments) and build a kernel.
#   product  tinyconfig + product.config
#   test     tinyconfig + product.config + debug.config
#   bench    tinyconfig + product.config + bench.config (dm-snapshot)
# The configuration is regenerated only when a fragment changes, so a
# rebuild after editing one source file recompiles just that file.
source "$(dirname "$0")/lib.sh"

flavour=${1:-test}
case $flavour in
product) fragments=(product) ;;
test) fragments=(product debug) ;;
bench) fragments=(product bench) ;;
*) die "unknown flavour $flavour" ;;
esac

out=$OUT_BASE/$flavour
mkdir -p "$out"
frag_paths=()
for f in "${fragments[@]}"; do frag_paths+=("$REPO/harness/configs/$f.config"); done
want=$(cat "${frag_paths[@]}" | sha256sum | cut -d' ' -f1)

if [ ! -f "$out/.config" ] || [ "$(cat "$out/.blksnap-config" 2>/dev/null)" != "$want" ]; then
	log "build[$flavour]: configuring from tinyconfig + ${fragments[*]}"
	kmake "$flavour" tinyconfig >/dev/null
	(cd "$WORK" && scripts/kconfig/merge_config.sh -m -O "$out" \
		"$out/.config" "${frag_paths[@]}" >/dev/null)
	kmake "$flavour" olddefconfig >/dev/null
	# A fragment option that did not stick means a missing dependency.
	bad=0
	while IFS= read -r line; do
		case $line in
		CONFIG_*=n) opt=${line%%=*}; grep -q "^$opt=" "$out/.config" && { log "not off: $line"; bad=1; } ;;
		CONFIG_*) grep -qx "$line" "$out/.config" || { log "did not stick: $line"; bad=1; } ;;
		esac
	done < <(grep -h '^CONFIG_' "${frag_paths[@]}")
	[ $bad -eq 0 ] || die "configuration incomplete"
	echo "$want" >"$out/.blksnap-config"
fi

# The test kernel is also the lint of our Rust: clippy runs on every crate
# and any warning fails the build, so an unchanged object is a clean one.
extra=()
[ "$flavour" = test ] && extra=(CLIPPY=1 KRUSTFLAGS=-Dwarnings)

log "build[$flavour]: make ${extra[*]} bzImage modules"
start=$(date +%s)
kmake "$flavour" "${extra[@]}" bzImage modules
log "build[$flavour]: done in $(($(date +%s) - start)) s"
