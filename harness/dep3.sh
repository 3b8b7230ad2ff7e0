#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# dep3.sh write SERIESDIR: add SERIESDIR/debian/patches/, the format-patch
#   series of SERIESDIR with DEP-3 fields, laid out as Debian's kernel
#   packaging keeps patches: features/all/blksnap/*.patch and a quilt
#   `series` file naming them relative to debian/patches.
# dep3.sh check SERIESDIR: KTAP-like result lines: every DEP-3 patch has
#   Description, Author, Origin and Forwarded, and the DEP-3 series, applied
#   with patch(1) as dpkg-source does, gives the same files as the
#   format-patch series.
# Fields (environment): BLKSNAP_ORIGIN (default "other, blksnap-rs
# commit:<id>"), BLKSNAP_FORWARDED (default "no"; a lore URL once posted).
source "$(dirname "$0")/lib.sh"

TOPIC=features/all/blksnap

# The commit that last changed a patch's sources, and its date; today's
# date if those files have changes not yet committed.
last_change() { # files... -> "id date"
	local id date
	id=$(cd "$REPO" && git log -1 --format=%H -- "$@")
	date=$(cd "$REPO" && git log -1 --format=%cs -- "$@")
	if [ -z "$id" ] || [ -n "$(cd "$REPO" && git status --porcelain -- "$@")" ]; then
		date=$(date -u +%F)
	fi
	echo "${id:-uncommitted} $date"
}

# DEP-3 fields for one format-patch file, as mail header lines: git am
# ignores headers it does not know, so the patch stays `git am`-able.
dep3_fields() { # fp-file source-patch
	local fp=$1 src=$2 tmp overlay id date
	tmp=$(mktemp -d)
	git mailinfo "$tmp/msg" "$tmp/diff" <"$fp" >"$tmp/info"
	overlay=$(patch_overlay "$REPO/patches/$src")
	# shellcheck disable=SC2086 # the overlay is a list of paths
	read -r id date < <(last_change "patches/$src" $overlay)
	# Description: the subject, then the body (blank lines as " ."), less
	# the sign-offs, which DEP-3's Author already carries.
	sed -n 's/^Subject: /Description: /p' "$tmp/info"
	grep -v '^Signed-off-by: ' "$tmp/msg" |
		awk '{l[NR]=$0} END{n=NR; while (n>0 && l[n]=="") n--;
			for (i=1;i<=n;i++) print (l[i]=="" ? " ." : " " l[i])}'
	echo "Author: $(sed -n 's/^Author: //p' "$tmp/info") <$(sed -n 's/^Email: //p' "$tmp/info")>"
	echo "Origin: ${BLKSNAP_ORIGIN:-other, blksnap-rs commit:$id}"
	echo "Forwarded: ${BLKSNAP_FORWARDED:-no}"
	echo "Last-Update: $date"
	rm -rf "$tmp"
}

write() {
	local series=$1 dir fp i=0 src srcs
	dir=$series/debian/patches
	rm -rf "$series/debian"
	mkdir -p "$dir/$TOPIC"
	mapfile -t srcs < <(series_patches)
	: >"$dir/series"
	# format-patch numbers its files in the order of patches/series.
	for fp in "$series"/*.patch; do
		src=${srcs[$i]}
		i=$((i + 1))
		# The header block as format-patch wrote it, the DEP-3 fields, then
		# the rest (message, diffstat, diff) unchanged.
		{
			sed '/^$/q' "$fp" | sed '$d'
			dep3_fields "$fp" "$src"
			sed -n '/^$/,$p' "$fp"
		} >"$dir/$TOPIC/$(basename "$fp")"
		echo "$TOPIC/$(basename "$fp")" >>"$dir/series"
	done
	[ "$i" -eq "${#srcs[@]}" ] || die "dep3: $i patches for ${#srcs[@]} entries of patches/series"
	log "dep3: $i patches in $dir"
}

# The fields a distribution's patch must carry that FILE lacks, as
# " Name..." (empty: none).  DEP-3 also takes Subject for Description and
# From for Author, but a format-patch file has those already: ours carry
# the four fields by their own names.  DEP-3 reads fields up to "---".
missing_fields() { # file
	local f name missing=
	f=$(sed '/^---$/q' "$1")
	for name in Description Author Origin Forwarded; do
		grep -q "^$name: ." <<<"$f" || missing+=" $name"
	done
	echo "$missing"
}

check() {
	local series=$1 dir n=0 p f tmp ok name missing diffs list touched
	dir=$series/debian/patches
	result() {
		n=$((n + 1))
		if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
	}
	mapfile -t list < <(series_patches "$dir/series" 2>/dev/null)
	# The series names exactly the patches there are, as many as upstream's.
	if [ ${#list[@]} -gt 0 ] &&
		[ "$(printf '%s\n' "${list[@]}" | sort)" = "$(cd "$dir" && find . -name '*.patch' | sed 's|^\./||' | sort)" ] &&
		[ ${#list[@]} -eq "$(find "$series" -maxdepth 1 -name '*.patch' | wc -l)" ]; then
		result ok "lint:dep3:series"
	else
		result fail "lint:dep3:series" "$dir/series does not list exactly the DEP-3 patches"
		echo "1..$n"
		return
	fi

	for p in "${list[@]}"; do
		name=lint:dep3:fields:$(basename "$p" .patch)
		missing=$(missing_fields "$dir/$p")
		if [ -z "$missing" ]; then
			result ok "$name"
		else
			result fail "$name" "missing:$missing"
		fi
	done
	# The same check on a format-patch file, which has Subject and From,
	# DEP-3's aliases, but none of the four fields: it must fail there.
	p=$(find "$series" -maxdepth 1 -name '*.patch' | sort | head -n1)
	missing=$(missing_fields "$p")
	if [ -n "$p" ] && [ "$missing" = " Description Author Origin Forwarded" ]; then
		result ok "lint:dep3:fields-check-refuses-a-format-patch"
	else
		result fail "lint:dep3:fields-check-refuses-a-format-patch" \
			"$(basename "$p"): missing '${missing# }', want all four"
	fi

	# Two copies of only the files the series touch (new files have no
	# pristine version): one for the DEP-3 series, one for format-patch's.
	tmp=$(mktemp -d /tmp/blksnap-dep3.XXXXXX)
	# shellcheck disable=SC2064 # expand $tmp now
	trap "rm -rf '$tmp'" RETURN
	mkdir -p "$tmp/dep3" "$tmp/fp"
	mapfile -t touched < <(cd "$dir" && patch_targets "${list[@]}"; cd "$series" && patch_targets ./*.patch)
	mapfile -t touched < <(printf '%s\n' "${touched[@]}" | sort -u)
	for f in "${touched[@]}"; do
		if [ -f "$PRISTINE/$f" ]; then
			(cd "$PRISTINE" && cp --parents "$f" "$tmp/dep3/" && cp --parents "$f" "$tmp/fp/")
		fi
	done

	# As dpkg-source applies a 3.0 (quilt) package's patches: no fuzz.
	ok=1
	for p in "${list[@]}"; do
		if ! (cd "$tmp/dep3" && patch -p1 -F0 -s --dry-run <"$dir/$p" >"$tmp/err" 2>&1 &&
			patch -p1 -F0 -s --no-backup-if-mismatch <"$dir/$p" >"$tmp/err" 2>&1); then
			sed 's/^/#   /' "$tmp/err"
			result fail "lint:dep3:applies-to-pristine" "$p does not apply"
			ok=0
			break
		fi
	done
	[ $ok -eq 1 ] && result ok "lint:dep3:applies-to-pristine"

	for p in "$series"/*.patch; do
		(cd "$tmp/fp" && git apply "$p") 2>"$tmp/err" || {
			sed 's/^/#   /' "$tmp/err"
			ok=0
			break
		}
	done
	if [ $ok -eq 1 ]; then
		compare_trees "$tmp/dep3" "$tmp/fp" "${touched[@]}"
		if [ $diffs -eq 0 ]; then
			result ok "lint:dep3:equals-format-patch(${#touched[@]} files)"
		else
			result fail "lint:dep3:equals-format-patch" "$diffs files differ"
		fi
	else
		result fail "lint:dep3:equals-format-patch" "a series does not apply"
	fi
	echo "1..$n"
}

case ${1:-} in
write | check) [ $# -eq 2 ] || die "usage: $0 write|check SERIESDIR"; "$1" "$(cd "$2" && pwd)" ;;
*) die "usage: $0 write|check SERIESDIR" ;;
esac
