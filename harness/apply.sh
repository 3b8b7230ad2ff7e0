#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Bring $WORK to "pristine kernel + our overlay files + our patch series",
# touching only the files whose content changes, so kbuild stays incremental.
source "$(dirname "$0")/lib.sh"

[ -f "$PRISTINE/.blksnap-version" ] || die "no kernel source; run harness/setup.sh"

mapfile -t patches < <(series_patches)

if [ ! -d "$WORK" ]; then
	log "work tree: copying pristine source (once)"
	mkdir -p "$(dirname "$WORK")"
	cp -a "$PRISTINE" "$WORK.tmp"
	mv "$WORK.tmp" "$WORK"
fi

# Build the wanted content of every file we own in a staging tree.
STAGE=$(mktemp -d "$CACHE/stage.XXXX")
trap 'rm -rf "$STAGE"' EXIT

for f in $(cd "$REPO/patches" && patch_targets "${patches[@]}"); do
	mkdir -p "$STAGE/$(dirname "$f")"
	[ -f "$PRISTINE/$f" ] && cp "$PRISTINE/$f" "$STAGE/$f"
done
for p in "${patches[@]}"; do
	patch -d "$STAGE" -p1 -s --no-backup-if-mismatch -f <"$REPO/patches/$p" >/dev/null ||
		die "patch $p does not apply to $(cat "$PRISTINE/.blksnap-version")"
done
for f in $(overlay_files); do
	if [ -f "$STAGE/$f" ]; then
		die "$f is both an overlay file and patched: keep one"
	fi
	mkdir -p "$STAGE/$(dirname "$f")"
	cp "$REPO/$f" "$STAGE/$f"
done

# Copy what changed; restore what we no longer own.
changed=0
(cd "$STAGE" && find . -type f | sed 's|^\./||' | sort) >"$STAGE.list"
while read -r f; do
	if ! cmp -s "$STAGE/$f" "$WORK/$f"; then
		mkdir -p "$WORK/$(dirname "$f")"
		cp "$STAGE/$f" "$WORK/$f"
		changed=$((changed + 1))
	fi
done <"$STAGE.list"
if [ -f "$WORK/.blksnap-owned" ]; then
	comm -23 "$WORK/.blksnap-owned" "$STAGE.list" | while read -r f; do
		if [ -f "$PRISTINE/$f" ]; then
			cp -p "$PRISTINE/$f" "$WORK/$f"
		else
			rm -f "$WORK/$f"
		fi
		log "apply: released $f"
	done
fi
mv "$STAGE.list" "$WORK/.blksnap-owned"
log "apply: $(wc -l <"$WORK/.blksnap-owned") files owned, $changed updated"
