#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# deb.sh build|check|unpack DIR|debconfig|debfull: Debian packages of our kernel and
# of the blksnap tool, and Debian's own configuration with our work.
#   build [kernel|tool]
#              `make bindeb-pkg` in the test kernel's build directory (same
#              make variables as build.sh test, so nothing recompiles):
#              linux-image-*, linux-headers-*, linux-libc-dev; and the
#              blksnap tool's package (dpkg-deb from a staged tree).  The
#              .debs go to $CACHE/deb.
#   check      the packages' contents, as KTAP-like lines
#   unpack DIR the image and tool packages extracted into DIR as dpkg would
#              install them (files, /var/lib/dpkg/status, *.md5sums), for
#              run-qemu.sh's BLKSNAP_PKGROOT
#   debconfig  Debian's amd64 configuration + configs/debian-rust.config:
#              no option dropped, then our objects compiled under it
#              (make prepare, which builds the rust/ crates, blk-filter and
#              the C files the series edits, drivers/block/blksnap_rs/),
#              KTAP-like lines
#   debfull [fresh]
#              the whole kernel (vmlinux, bzImage, every module) with that
#              configuration, in a build directory of its own, timed: hours
#              on 2 cores, so never part of the test command.  Resumable:
#              each run appends the wall time of what it did to
#              $CACHE/deb/debfull.times (a run stopped by a signal too), and
#              the run that ends the build prints the sum.  "fresh" starts
#              from an empty build directory.
source "$(dirname "$0")/lib.sh"

DEB_DIR=$CACHE/deb
# Debian's version of the pinned source with ours appended; debian/rules
# passes its revision ("1~bpo13+1+blksnap1") as KBUILD_BUILD_VERSION, so
# the packaged kernel says it in `uname -v` ("#1~bpo13+1+blksnap1 ...").
KDEB_VERSION=${KERNEL_VERSION_PIN}+blksnap1
MAINTAINER="blksnap-rs developers <blksnap-rs@lists.example.org>"
TOOL_DIR=$REPO/tools/blksnap
TOOL_PKG=blksnap
# The package's revision of the tool's version (Cargo.toml).
TOOL_REVISION=1

n=0
result() { # status name [detail]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
}
check() { # name why command... : one result from a command's status
	local name=$1 why=$2
	shift 2
	if "$@"; then result ok "$name"; else result fail "$name" "$why"; fi
}

krelease() { cat "$OUT_BASE/test/include/config/kernel.release"; }
tool_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$TOOL_DIR/Cargo.toml" | head -n1; }
# The one .deb of package $1 in $DEB_DIR.
deb_of() {
	local f
	f=$(find "$DEB_DIR" -maxdepth 1 -name "$1_*.deb" | head -n1)
	[ -n "$f" ] && echo "$f"
}

# --- kernel packages: bindeb-pkg in the test kernel's build directory
build_kernel_debs() {
	local out=$OUT_BASE/test start
	[ -f "$out/.config" ] || die "no test kernel; run harness/build.sh test"
	# dpkg-buildpackage leaves its products next to the build directory.
	rm -f "$OUT_BASE"/*.deb "$OUT_BASE"/*.buildinfo "$OUT_BASE"/*.changes
	local name=${MAINTAINER% <*} email=${MAINTAINER#*<}
	email=${email%>}
	log "deb: make bindeb-pkg ($KDEB_VERSION, $(krelease))"
	start=$(date +%s)
	KDEB_PKGVERSION=$KDEB_VERSION KDEB_SOURCENAME=linux-blksnap \
		KDEB_CHANGELOG_DIST=$KERNEL_SUITE \
		DEBFULLNAME=$name DEBEMAIL=$email \
		kmake test CLIPPY=1 KRUSTFLAGS=-Dwarnings bindeb-pkg >"$DEB_DIR/bindeb-pkg.log" 2>&1 ||
		{ tail -30 "$DEB_DIR/bindeb-pkg.log" >&2; die "bindeb-pkg failed (log: $DEB_DIR/bindeb-pkg.log)"; }
	rm -f "$DEB_DIR"/linux-*.deb
	mv "$OUT_BASE"/*.deb "$DEB_DIR/"
	mv "$OUT_BASE"/*.buildinfo "$OUT_BASE"/*.changes "$DEB_DIR/" 2>/dev/null || true
	log "deb: bindeb-pkg done in $(($(date +%s) - start)) s"
}

# --- the tool's package: a staged tree and dpkg-deb --build
build_tool_deb() {
	local bin ver stage date year glibc
	bin=$("$REPO/harness/tool.sh" build) || die "tool build failed"
	ver=$(tool_version)-$TOOL_REVISION
	stage=$DEB_DIR/stage-$TOOL_PKG
	rm -rf "$stage"
	mkdir -p "$stage/DEBIAN" "$stage/usr/sbin" "$stage/usr/share/man/man8" \
		"$stage/usr/share/doc/$TOOL_PKG"
	# sbin: an administrator's command (it needs CAP_SYS_ADMIN for
	# /dev/blksnap-control), as its man page's section 8 says.
	install -m 0755 "$bin" "$stage/usr/sbin/blksnap"
	strip_tool "$stage/usr/sbin/blksnap"
	gzip -9n <"$TOOL_DIR/blksnap.8" >"$stage/usr/share/man/man8/blksnap.8.gz"
	date=$(cd "$REPO" && git log -1 --format=%aD -- tools/blksnap)
	year=$(cd "$REPO" && git log -1 --format=%as -- tools/blksnap | cut -d- -f1)
	# lintian: a static-pie executable is ET_DYN without a libc NEEDED,
	# which lintian takes for a shared library; the package is not an
	# upload to Debian's archive, so its changelog closes no bug.
	mkdir -p "$stage/usr/share/lintian/overrides"
	cat >"$stage/usr/share/lintian/overrides/$TOOL_PKG" <<EOF
# static-pie executable, not a shared library
$TOOL_PKG: shared-library-lacks-prerequisites [usr/sbin/blksnap]
# not uploaded to Debian's archive
$TOOL_PKG: initial-upload-closes-no-bugs
EOF
	{
		echo "$TOOL_PKG ($ver) $KERNEL_SUITE; urgency=medium"
		echo
		echo "  * Package of the blksnap tool of blksnap-rs (tools/blksnap), commit"
		echo "    $(cd "$REPO" && git log -1 --format=%h -- tools/blksnap)."
		echo
		echo " -- $MAINTAINER  ${date:-$(date -R)}"
	} | gzip -9n >"$stage/usr/share/doc/$TOOL_PKG/changelog.Debian.gz"
	# The binary is static: the crates of Cargo.lock and glibc are in it.
	glibc=$(dpkg-query -W -f='${source:Package} (= ${source:Version})' libc6-dev)
	{
		echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
		echo "Upstream-Name: blksnap-rs"
		echo "Comment: /usr/sbin/blksnap is linked statically; it holds, besides"
		echo " blksnap-rs's own code, these crates (from crates.io, versions of"
		echo " tools/blksnap/Cargo.lock, licences as the crates declare them; proc"
		echo " macros, which run only at build time, left out) and"
		echo " $glibc (LGPL-2.1+, /usr/share/doc/libc6/copyright):"
		(cd "$TOOL_DIR" && cargo tree -q --locked --offline -e normal,no-proc-macro \
			--prefix none --format '{p} {l}' --target x86_64-unknown-linux-gnu) |
			grep -v "^$TOOL_PKG " | sort -u | sed 's/^\([^ ]*\) v\([^ ]*\) /\1 \2: /; s/^/ /'
		echo
		echo "Files: *"
		echo "Copyright: ${year:-$(date -u +%Y)} blksnap-rs developers"
		echo "License: GPL-2.0-only"
		echo " On Debian systems, the complete text of the GNU General Public License"
		echo " version 2 can be found in /usr/share/common-licenses/GPL-2."
	} >"$stage/usr/share/doc/$TOOL_PKG/copyright"
	find "$stage/usr" -type d -exec chmod 0755 {} +
	find "$stage/usr" -type f ! -path '*/sbin/*' -exec chmod 0644 {} +
	(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
	cat >"$stage/DEBIAN/control" <<EOF
Package: $TOOL_PKG
Version: $ver
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Built-Using: $glibc
Section: admin
Priority: optional
Description: block device snapshots and change tracking (blksnap) - tool
 Command-line tool for administrators and backup scripts that drives the
 blksnap kernel module: change tracking of block devices (the blocks
 changed between snapshots) and point-in-time snapshots of one or more
 block devices in use, with their difference storage.
EOF
	rm -f "$DEB_DIR/${TOOL_PKG}"_*.deb
	dpkg-deb --root-owner-group -Zxz --build "$stage" \
		"$DEB_DIR/${TOOL_PKG}_${ver}_amd64.deb" >/dev/null
	rm -rf "$stage"
	log "deb: $(basename "$(deb_of "$TOOL_PKG")")"
}

# --- check: the packages' contents
# Lines "PERMS OWNER SIZE DATE TIME PATH[ -> TARGET]" of dpkg-deb --contents;
# prints the paths, without the leading ".".
deb_paths() { dpkg-deb --contents "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
has_path() { grep -qx -- "$2" <<<"$1"; }
same_file() { cmp -s "$1" "$2"; }
uapi_equal() { # installed-header repo-header scratch-file
	(cd "$OUT_BASE/test" && "$WORK/scripts/headers_install.sh" "$2" "$3") && same_file "$1" "$3"
}
# As Debian's dh_strip strips an executable.
strip_tool() { strip --remove-section=.comment --remove-section=.note "$@"; }
gz_equal() { [ -f "$1" ] && zcat "$1" | cmp -s - "$2"; }
tool_binary() { # packaged built: the built binary, stripped
	local copy rc
	copy=$(mktemp)
	cp "$2" "$copy" && strip_tool "$copy" && [ -x "$1" ] && same_file "$1" "$copy"
	rc=$?
	rm -f "$copy"
	return $rc
}
changelog_for() { # changelog.Debian.gz deb: its first entry is the package's version
	[ -f "$1" ] && zcat "$1" | head -n1 | grep -qF "($(dpkg-deb --field "$2" Version))"
}
md5sums_match() { # deb root scratch-dir
	[ -n "$1" ] && dpkg-deb -e "$1" "$3" && (cd "$2" && md5sum --quiet -c "$3/md5sums")
}

check_debs() {
	local ver img hdr libc tool tmp p paths f
	ver=$(krelease)
	img=$(deb_of "linux-image-$ver") || true
	hdr=$(deb_of "linux-headers-$ver") || true
	libc=$(deb_of linux-libc-dev) || true
	tool=$(deb_of "$TOOL_PKG") || true
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	for p in "linux-image-$ver:$img" "linux-headers-$ver:$hdr" "linux-libc-dev:$libc" "$TOOL_PKG:$tool"; do
		f=${p#*:}
		if [ -z "$f" ]; then
			result fail "deb:parse:${p%%:*}" "no package in $DEB_DIR"
		elif dpkg-deb --info "$f" >/dev/null && dpkg-deb --contents "$f" >/dev/null &&
			[ "$(dpkg-deb --field "$f" Package)" = "${p%%:*}" ]; then
			result ok "deb:parse:${p%%:*}"
			dpkg-deb -x "$f" "$tmp/${p%%:*}"
		else
			result fail "deb:parse:${p%%:*}" "dpkg-deb --info/--contents failed"
		fi
	done

	# linux-image: the kernel image, blksnap.ko for this release, stripped
	# as modules_install INSTALL_MOD_STRIP=1 leaves it.
	paths=$(if [ -n "$img" ]; then deb_paths "$img"; fi)
	check "deb:image:vmlinuz" "no /boot/vmlinuz-$ver" \
		has_path "$paths" "/boot/vmlinuz-$ver"
	check "deb:image:vmlinuz-is-the-built-bzImage" "differs from $OUT_BASE/test/arch/x86/boot/bzImage" \
		same_file "$tmp/linux-image-$ver/boot/vmlinuz-$ver" "$OUT_BASE/test/arch/x86/boot/bzImage"
	check "deb:image:blksnap.ko" "no /lib/modules/$ver/kernel/drivers/block/blksnap_rs/blksnap.ko" \
		has_path "$paths" "/lib/modules/$ver/kernel/drivers/block/blksnap_rs/blksnap.ko"
	f=$tmp/linux-image-$ver/lib/modules/$ver/kernel/drivers/block/blksnap_rs/blksnap.ko
	check "deb:image:blksnap.ko-vermagic" "vermagic: $(modinfo -F vermagic "$f" 2>&1)" \
		grep -q "^$ver " < <(modinfo -F vermagic "$f" 2>/dev/null)
	check "deb:image:modules.dep" "no modules.dep naming blksnap.ko" \
		grep -q 'blksnap_rs/blksnap.ko:' "$tmp/linux-image-$ver/lib/modules/$ver/modules.dep"
	check "deb:image:config" "no /boot/config-$ver equal to the build's" \
		same_file "$tmp/linux-image-$ver/boot/config-$ver" "$OUT_BASE/test/.config"

	# linux-headers: the tree for out-of-tree modules, with all of include/
	# of the source (so our uapi headers are under include/uapi/linux/).
	local hroot=$tmp/linux-headers-$ver/usr/src/linux-headers-$ver
	check "deb:headers:include/linux/blk-filter.h" "missing or not the repository's" \
		same_file "$hroot/include/linux/blk-filter.h" "$REPO/include/linux/blk-filter.h"
	for f in blksnap.h blk-filter.h; do
		check "deb:headers:include/uapi/linux/$f" "missing or not the repository's" \
			same_file "$hroot/include/uapi/linux/$f" "$REPO/include/uapi/linux/$f"
	done
	check "deb:headers:Module.symvers-blk-filter" "Module.symvers has no bdev_filter symbol" \
		grep -q 'blkfilter\|bdev_filter\|blk_filter' "$hroot/Module.symvers"
	check "deb:headers:build-link" "/lib/modules/$ver/build is not a link to the headers" \
		test "$(readlink "$tmp/linux-headers-$ver/lib/modules/$ver/build")" = "/usr/src/linux-headers-$ver"

	# linux-libc-dev: headers_install's copies of our uapi headers (the
	# repository's bytes, the include guard's _UAPI_ prefix dropped, as
	# scripts/headers_install.sh does), and fs.h as the series edits it.
	for f in blksnap.h blk-filter.h; do
		check "deb:libc-dev:/usr/include/linux/$f" "missing or not the repository's, as headers_install gives it" \
			uapi_equal "$tmp/linux-libc-dev/usr/include/linux/$f" "$REPO/include/uapi/linux/$f" "$tmp/$f"
	done
	check "deb:libc-dev:/usr/include/linux/fs.h" "not the series' fs.h (block device filter ioctl numbers)" \
		grep -q 'used by block device filter ioctls' "$tmp/linux-libc-dev/usr/include/linux/fs.h"

	# The tool: the binary tool.sh builds, its man page, policy's documents.
	local troot=$tmp/$TOOL_PKG
	local bin
	bin=$("$REPO/harness/tool.sh" build 2>/dev/null) || bin=none
	check "deb:tool:/usr/sbin/blksnap" "missing, not executable or not the static build, stripped" \
		tool_binary "$troot/usr/sbin/blksnap" "$bin"
	check "deb:tool:man8/blksnap.8.gz" "missing or not tools/blksnap/blksnap.8" \
		gz_equal "$troot/usr/share/man/man8/blksnap.8.gz" "$TOOL_DIR/blksnap.8"
	check "deb:tool:copyright" "no /usr/share/doc/$TOOL_PKG/copyright" \
		grep -q '^License: GPL-2.0-only' "$troot/usr/share/doc/$TOOL_PKG/copyright"
	check "deb:tool:changelog.Debian.gz" "missing or not for this version" \
		changelog_for "$troot/usr/share/doc/$TOOL_PKG/changelog.Debian.gz" "$tool"
	check "deb:tool:md5sums" "DEBIAN/md5sums does not match the files" \
		md5sums_match "$tool" "$troot" "$tmp/tool.ctl"
	if ! command -v lintian >/dev/null; then
		n=$((n + 1))
		echo "ok $n deb:tool:lintian # SKIP lintian not installed"
	else
		local out
		if out=$(lintian --fail-on error,warning "$tool" 2>&1); then
			result ok "deb:tool:lintian"
		else
			echo "$out" | head -20 | sed 's/^/#   /'
			result fail "deb:tool:lintian" "lintian errors"
		fi
	fi
	echo "1..$n"
}

# --- unpack: what run-qemu.sh's BLKSNAP_PKGROOT takes
unpack_debs() {
	local dir=$1 ver p f ctl
	ver=$(krelease)
	# Only a directory this command made before is emptied.
	if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/.blksnap-pkgroot" ]; then
		die "$dir is not empty and was not made by deb.sh unpack"
	fi
	rm -rf "$dir"
	mkdir -p "$dir/var/lib/dpkg/info"
	: >"$dir/.blksnap-pkgroot"
	: >"$dir/var/lib/dpkg/status"
	for p in "linux-image-$ver" "$TOOL_PKG"; do
		f=$(deb_of "$p") || die "no $p package in $DEB_DIR; run harness/deb.sh build"
		dpkg-deb -x "$f" "$dir"
		ctl=$(mktemp -d)
		dpkg-deb -e "$f" "$ctl"
		cp "$ctl/md5sums" "$dir/var/lib/dpkg/info/$p.md5sums"
		{ sed '/^Description:/,$d' "$ctl/control"; echo "Status: install ok installed"; echo; } \
			>>"$dir/var/lib/dpkg/status"
		rm -rf "$ctl"
	done
	log "deb: linux-image-$ver and $TOOL_PKG unpacked into $dir"
}

# --- debconfig: Debian's configuration, Rust and blksnap, our objects
DEBIAN_CONFIG=$TOOLS/debian-config/config.amd64_none_amd64
PAHOLE_BIN=$TOOLS/pahole/usr/bin/pahole

# make in the build directory of $dflavour (debconfig's and debfull's own,
# dynamically scoped; "debian" by default).
dmake() {
	# shellcheck disable=SC2046
	make -s $(kmake_args "${dflavour:-debian}") PAHOLE="$PAHOLE_BIN" "$@"
}

# "CONFIG_X<tab>v" for each "CONFIG_X=v" line, and "# CONFIG_X is not set"
# as v=n, sorted for join(1).
config_values() {
	sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=\(.*\)/\1\t\2/p; s/^# \(CONFIG_[A-Za-z0-9_]*\) is not set/\1\tn/p' "$1" |
		LC_ALL=C sort
}
# "CONFIG_X<tab>old<tab>new" for the options of config $1 whose value config
# $2 changes; an option $2 does not know counts as n there.  Options new in
# $2 are not listed.
config_changes() {
	LC_ALL=C join -t "$(printf '\t')" -a1 -e n -o 0,1.2,2.2 <(config_values "$1") <(config_values "$2") |
		awk -F'\t' '$2 != $3'
}
# Those that were on (y or m) in $1 and are off in $2.
turned_off() { awk -F'\t' '($2 == "y" || $2 == "m") && $3 == "n" { print $1 }' <<<"$1"; }

not_set() { ! grep -q "^$1=" "$2"; }

# step NAME COMMAND...: one result for a make step, with its time; fails on
# an error, or on a compiler warning in our files.  objtool's warnings are
# left to objtool_check, in $step_out.
step_out=
step() {
	local name=$1 t0
	shift
	t0=$(date +%s)
	if step_out=$("$@" 2>&1); then
		echo "# $name: $(($(date +%s) - t0)) s"
		# A warning line and the next (rustc names the file on its own
		# line, " --> path"); counted, not grep -q: under pipefail an early
		# exit of grep fails the writer and reads as no match.
		local ours
		ours=$(grep -A1 'warning' <<<"$step_out" | grep -v 'warning: objtool:' |
			grep -cE 'blk-filter|blksnap|block/' || true)
		if [ "${ours:-0}" -gt 0 ]; then
			echo "$step_out" | grep -v 'warning: objtool:' | grep -A5 warning | head -40 | sed 's/^/#   /'
			result fail "$name" "compiler warnings in our files"
		else
			result ok "$name"
		fi
	else
		echo "$step_out" | tail -40 | sed 's/^/#   /'
		result fail "$name" "failed after $(($(date +%s) - t0)) s"
	fi
}
# objtool_check NAME: no objtool warning on our objects in the last step.
# (A function that "falls through to the next function" ends in a call
# objtool does not know to be noreturn: the list in tools/objtool/check.c
# must know every such function of Rust's core that the compiler uses.)
objtool_check() {
	local warnings callees
	warnings=$(grep 'warning: objtool:' <<<"$step_out" | grep -E 'blk-filter|blksnap|block/' || true)
	if [ -z "$warnings" ]; then
		result ok "$1"
		return
	fi
	echo "$warnings" | cut -c1-300 | sed 's/^/#   /'
	callees=$(grep -o 'falls through' <<<"$warnings" | wc -l)
	result fail "$1" "$(wc -l <<<"$warnings") objtool warnings ($callees 'falls through to next function')"
}

debconfig() { # [flavour: build directory under $OUT_BASE]
	local dflavour=${1:-debian}
	local out=$OUT_BASE/$dflavour frag=$REPO/harness/configs/debian-rust.config
	local t0 line opt changed gone obj pfiles objs
	t0=$(date +%s)
	[ -f "$DEBIAN_CONFIG" ] || die "no Debian configuration; run harness/setup.sh"
	[ -x "$PAHOLE_BIN" ] || die "no pahole; run harness/setup.sh"
	mkdir -p "$out"
	# Debian's configuration as our toolchain (clang, lld, rustc) reads it.
	cp "$DEBIAN_CONFIG" "$out/.config"
	dmake olddefconfig >/dev/null
	cp "$out/.config" "$out/config.debian"
	# Options of Debian's that our toolchain (clang 19 and lld instead of
	# gcc 14 and binutils, pahole 1.24 instead of 1.30) turns off: not
	# Rust's doing, but a Debian build would have them.
	changed=$(config_changes "$DEBIAN_CONFIG" "$out/config.debian")
	echo "# Debian options off under this toolchain (not Rust's doing): $(turned_off "$changed" | tr '\n' ' ')"
	# Then Rust and blksnap.
	(cd "$WORK" && scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" "$frag" >/dev/null)
	dmake olddefconfig >/dev/null
	while IFS= read -r line; do
		case $line in
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			opt=${opt%% *}
			check "debconfig:$opt=n" "$(grep "^$opt=" "$out/.config")" \
				not_set "$opt" "$out/.config"
			;;
		CONFIG_*)
			check "debconfig:$line" "got: $(grep "^${line%%=*}[= ]" "$out/.config" || echo unset)" \
				grep -qx "$line" "$out/.config"
			;;
		esac
	done < <(grep -E '^CONFIG_|^# CONFIG_.* is not set' "$frag")
	# What the fragment changed in Debian's configuration (as this
	# toolchain reads it), new symbols (BLKSNAP itself) aside: none of
	# Debian's options may go.
	changed=$(config_changes "$out/config.debian" "$out/.config")
	echo "# changed by debian-rust.config: $(tr '\t\n' ' ;' <<<"${changed:-none}")"
	gone=$(turned_off "$changed")
	check "debconfig:no-debian-option-turned-off" "turned off: $(tr '\n' ' ' <<<"$gone")" test -z "$gone"
	cp "$out/.config" "$out/config.debian-rust"

	step "debconfig:make-prepare" dmake -j"$(nproc)" prepare
	# The C files of the series: blk-filter and the files it edits.
	mapfile -t pfiles < <(series_patches)
	{ (cd "$REPO/patches" && patch_targets "${pfiles[@]}"); repo_files 'block/*.c'; } |
		grep '^block/.*\.c$' | grep -v kunit | sed 's/\.c$/.o/' | sort -u >"$out/objs"
	mapfile -t objs <"$out/objs"
	rm -f "${objs[@]/#/$out/}"
	step "debconfig:block-objects" dmake -j"$(nproc)" "${objs[@]}"
	objtool_check "debconfig:objtool:block-objects"
	for obj in "${objs[@]}"; do
		check "debconfig:$obj" "not built" test -s "$out/$obj"
	done
	step "debconfig:rust" dmake -j"$(nproc)" rust/
	# From its sources each time: the time of the check is this step's.
	rm -f "$out"/drivers/block/blksnap_rs/*.o
	# Warnings are errors in our Rust, as in the test build: Debian's
	# configuration has no CONFIG_WERROR.
	step "debconfig:drivers/block/blksnap_rs" dmake -j"$(nproc)" KRUSTFLAGS=-Dwarnings \
		drivers/block/blksnap_rs/
	objtool_check "debconfig:objtool:drivers/block/blksnap_rs"
	check "debconfig:blksnap.o" "no drivers/block/blksnap_rs/blksnap.o" \
		test -s "$out/drivers/block/blksnap_rs/blksnap.o"
	echo "# debconfig: $(($(date +%s) - t0)) s"
	echo "1..$n"
}

# --- debfull: the whole kernel with Debian's configuration, timed
DEBFULL_TIMES=$DEB_DIR/debfull.times

# segment NAME STATUS START: one line of the times file.
segment() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(date -u -d "@$3" +%FT%TZ)" \
		"$(($(date +%s) - $3))" "$(nproc)" >>"$DEBFULL_TIMES"
}

debfull() {
	local dflavour=debian-full
	local out=$OUT_BASE/$dflavour t0 total make_pid
	if [ "${1:-}" = fresh ]; then
		rm -rf "$out"
		rm -f "$DEBFULL_TIMES" "$DEB_DIR/debfull.log"
	fi
	[ -f "$DEBFULL_TIMES" ] || printf 'step\tstatus\tstarted\tseconds\tcpus\n' >"$DEBFULL_TIMES"
	# Written once debconfig has passed, not by it: it writes its
	# configuration before its checks end.
	if [ ! -f "$out/.debfull-configured" ]; then
		t0=$(date +%s)
		log "debfull: configuring as deb.sh debconfig does (log in $DEB_DIR/debfull-debconfig.log)"
		debconfig "$dflavour" >"$DEB_DIR/debfull-debconfig.log" 2>&1 ||
			die "debconfig failed (log: $DEB_DIR/debfull-debconfig.log)"
		grep -q '^not ok' "$DEB_DIR/debfull-debconfig.log" &&
			die "debconfig has failures (log: $DEB_DIR/debfull-debconfig.log)"
		touch "$out/.debfull-configured"
		segment debconfig ok "$t0"
	fi
	t0=$(date +%s)
	log "debfull: make all -j$(nproc) in $out (log in $DEB_DIR/debfull.log)"
	# In the background, so that a signal is handled at once rather than
	# when make ends; a run stopped part way still counts, and make takes
	# up where it was.
	# make itself, not dmake: a function would run in a subshell, and the
	# signal would stop that and leave make building.
	# shellcheck disable=SC2046
	make -s $(kmake_args "$dflavour") PAHOLE="$PAHOLE_BIN" -j"$(nproc)" all \
		>>"$DEB_DIR/debfull.log" 2>&1 &
	make_pid=$!
	trap 'kill -TERM "$make_pid" 2>/dev/null || true; wait "$make_pid" || true
		segment all stopped "$t0"; exit 143' INT TERM
	if ! wait "$make_pid"; then
		trap - INT TERM
		segment all failed "$t0"
		tail -30 "$DEB_DIR/debfull.log" >&2
		die "make all failed (log: $DEB_DIR/debfull.log)"
	fi
	trap - INT TERM
	segment all ok "$t0"
	total=$(awk -F'\t' 'NR > 1 { s += $4 } END { print s }' "$DEBFULL_TIMES")
	column -t -s "$(printf '\t')" "$DEBFULL_TIMES" >&2 || cat "$DEBFULL_TIMES" >&2
	log "debfull: built in $total s ($((total / 60)) min) of wall time in all," \
		"$(find "$out" -name '*.ko' | wc -l) modules, $(du -sh "$out" | cut -f1) build directory"
}

mkdir -p "$DEB_DIR"
case ${1:-} in
build)
	# "build kernel" or "build tool" builds only those.
	[ "${2:-kernel}" = kernel ] && build_kernel_debs
	[ "${2:-tool}" = tool ] && build_tool_deb
	ls -l "$DEB_DIR"/*.deb >&2
	;;
check) check_debs ;;
unpack)
	[ -n "${2:-}" ] || die "usage: deb.sh unpack DIR"
	unpack_debs "$2"
	;;
debconfig) debconfig ;;
debfull) debfull "${2:-}" ;;
*) die "usage: deb.sh build|check|unpack DIR|debconfig|debfull [fresh]" ;;
esac
