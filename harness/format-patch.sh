#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# format-patch.sh [OUTDIR]: emit the whole work as a `git format-patch` series
# against the pinned kernel, one commit per entry of patches/series.  Each
# patch file names the overlay files that belong to its commit in an
# "Overlay:" header line.  Default OUTDIR: $CACHE/series.  OUTDIR/debian/
# gets the same series with DEP-3 fields, for distributions (dep3.sh).
source "$(dirname "$0")/lib.sh"

outdir=${1:-$CACHE/series}
repo=$CACHE/series-repo
rm -rf "$repo" "$outdir"
mkdir -p "$repo" "$outdir"
outdir=$(cd "$outdir" && pwd)

mapfile -t patches < <(series_patches)

# Base commit: the pristine versions of the upstream files the series edits.
# Blob ids depend only on content, so the index lines match upstream's.
cd "$repo"
git init -q
git config user.name "blksnap-rs developers"
git config user.email "blksnap-rs@lists.example.org"
(cd "$REPO/patches" && patch_targets "${patches[@]}") | while read -r f; do
	mkdir -p "$(dirname "$f")"
	cp "$PRISTINE/$f" "$f"
done
git add -A
git commit -q -m "Linux $(cat "$PRISTINE/.blksnap-version")"
base=$(git rev-parse HEAD)

declare -A claimed
for p in "${patches[@]}"; do
	file=$REPO/patches/$p
	subject=$(sed -n 's/^Subject: //p;/^---$/q' "$file" | head -n1)
	overlay=$(patch_overlay "$file")
	[ -n "$subject" ] || die "$p has no Subject: line"
	patch -p1 -s --no-backup-if-mismatch -f <"$file" >/dev/null || die "$p does not apply"
	for f in $overlay; do
		[ -f "$REPO/$f" ] || die "$p names $f, which does not exist"
		mkdir -p "$(dirname "$f")"
		cp "$REPO/$f" "$f"
		claimed[$f]=1
	done
	# The message: everything between the header block and the "---" line.
	awk 'BEGIN{h=1} /^---$/{exit} h&&/^$/{h=0;next} !h{print}' "$file" >"$repo.msg"
	git add -A
	{ echo "$subject"; echo; cat "$repo.msg"; } | git commit -q -F - --allow-empty
	rm -f "$repo.msg"
done

# Every overlay file must belong to some commit.
overlay_files | while read -r f; do
	[ -n "${claimed[$f]:-}" ] || die "$f is not in any patch's Overlay: line"
done

git format-patch -q --no-signature -o "$outdir" "$base..HEAD"
log "format-patch: $(ls "$outdir" | wc -l) patches in $outdir"
"$REPO/harness/dep3.sh" write "$outdir"
