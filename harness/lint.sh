#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# lint.sh SERIESDIR: style checks, one KTAP-like result line per check.
#   checkpatch.pl on every patch of the format-patch series
#   kernel-doc -Wall on our C sources and headers
#   rustfmt --check on our Rust files (once there are any)
#   dep3.sh check on the DEP-3 copy of the series (SERIESDIR/debian)
source "$(dirname "$0")/lib.sh"

series=$1
n=0
result() { # status name [detail]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
}

for p in "$series"/*.patch; do
	name=lint:checkpatch:$(basename "$p" .patch)
	# New files are listed in MAINTAINERS by the filter patch itself.
	if report=$("$WORK/scripts/checkpatch.pl" --no-tree -q --ignore FILE_PATH_CHANGES "$p" 2>&1); then
		result ok "$name"
	else
		echo "$report" | sed 's/^/#   /'
		result fail "$name" "checkpatch complained"
	fi
done

mapfile -t csrc < <(repo_files 'block/*.c' 'include/*.h' 'drivers/*.c' 'drivers/*.h')
for f in "${csrc[@]}"; do
	report=$(cd "$WORK" && scripts/kernel-doc -none -Wall "$f" 2>&1 || true)
	if [ -z "$report" ]; then
		result ok "lint:kernel-doc:$f"
	else
		echo "$report" | sed 's/^/#   /'
		result fail "lint:kernel-doc:$f" "kernel-doc warnings"
	fi
done

# The kernel's Rust; the tool's own style is checked by tool.sh (cargo fmt).
mapfile -t rsrc < <(repo_files '*.rs' "$TOOL_PATHSPEC")
if [ ${#rsrc[@]} -gt 0 ]; then
	if report=$(cd "$WORK" && rustfmt --check --config-path .rustfmt.toml "${rsrc[@]}" 2>&1); then
		result ok "lint:rustfmt"
	else
		echo "$report" | head -40 | sed 's/^/#   /'
		result fail "lint:rustfmt" "rustfmt would reformat"
	fi
fi
# The distribution form of the series; renumbered into this stream.
while IFS= read -r line; do
	case $line in
	"ok "*) result ok "${line#ok [0-9]* }" ;;
	"not ok "*)
		line=${line#not ok [0-9]* }
		result fail "${line%% # *}" "${line#* # }"
		;;
	"#"*) echo "$line" ;;
	esac
done < <("$REPO/harness/dep3.sh" check "$series")
echo "1..$n"
