#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# test.sh: the whole test suite, from a bare machine to the summary line.
#   setup -> apply -> the blksnap tool's tests (host) -> lint
#   -> build the debug test kernel -> ABI check
#   -> series check
#   -> boot under QEMU/TCG: KUnit + kselftests + kmemleak -> splat check
#   -> Debian packages (bindeb-pkg, the tool's), their contents
#   -> two short boots: bdev_allow_write_mounted=0; the packaged kernel,
#      modules and tool, with the tool's scenarios
#   -> Debian's configuration + Rust + blksnap: configure, our objects
# Ends with "N passed, N failed, N skipped"; exits non-zero on any failure.
source "$(dirname "$0")/lib.sh"

rundir=${BLKSNAP_RUNDIR:-$CACHE/runs/test-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$rundir"
report=$rundir/report.txt
: >"$report"
t0=$(date +%s)

# Results from a KTAP-like stream: "ok N name" / "not ok N name # why".
collect() {
	local line
	while IFS= read -r line; do
		case $line in
		"ok "*" # SKIP"*) echo "SKIP ${line#ok [0-9]* }" >>"$report" ;;
		"ok "*) echo "OK   ${line#ok [0-9]* }" >>"$report" ;;
		"not ok "*) echo "FAIL ${line#not ok [0-9]* }" >>"$report" ;;
		"#"*) echo "$line" ;;
		esac
	done
}
stage_failed() { echo "FAIL $1  # $2" >>"$report"; }
# Selftest programs that need a boot of their own.
OWN_BOOT=blksnap_writemounted
# The blksnap tool's scenarios, in a boot of their own too: the main guest
# has about a minute left under its time target, they take two.
TOOL_BOOT=blksnap_tool
# The packaged kernel's own checks, in that boot, which runs the packages.
PKG_BOOT=blksnap_package

"$REPO/harness/setup.sh"
"$REPO/harness/apply.sh"

python3 "$REPO/harness/results.py" --self-test | collect
# The tool's cargo tests, clippy, rustfmt and static build; its scenarios
# run in the guest below (selftest program blksnap_tool).
"$REPO/harness/tool.sh" test | collect
"$REPO/harness/format-patch.sh" "$rundir/series"
"$REPO/harness/lint.sh" "$rundir/series" | collect

if "$REPO/harness/build.sh" test; then
	echo "OK   build:test-kernel" >>"$report"
	"$REPO/harness/abi-check.sh" test | collect
	"$REPO/harness/verify-series.sh" "$rundir/series" | collect
	log "boot: QEMU/TCG, tests inside the guest"
	BLKSNAP_SKIP=$OWN_BOOT,$TOOL_BOOT "$REPO/harness/run-qemu.sh" test test "$rundir/guest"
	python3 "$REPO/harness/results.py" --expect-kunit 1 "$rundir/guest" >"$rundir/guest.txt"
	grep -v '^RESULT ' "$rundir/guest.txt" >>"$report"
	# Originals of mounted file systems, with writers to them refused.
	log "boot: again, with bdev_allow_write_mounted=0"
	BLKSNAP_ONLY=$OWN_BOOT BLKSNAP_APPEND="bdev_allow_write_mounted=0 kunit.enable=0" \
		"$REPO/harness/run-qemu.sh" test test "$rundir/guest-ro"
	python3 "$REPO/harness/results.py" "$rundir/guest-ro" >"$rundir/guest-ro.txt"
	grep -v '^RESULT ' "$rundir/guest-ro.txt" >>"$report"
	if grep -qE "^(OK  |FAIL|SKIP) ([a-z_]+:)?$OWN_BOOT(: |  #)" "$rundir/guest-ro.txt"; then
		echo "OK   boot:$OWN_BOOT-ran" >>"$report"
	else
		stage_failed "boot:$OWN_BOOT-ran" "no $OWN_BOOT result from the guest"
	fi
	# Debian packages of this kernel (bindeb-pkg) and of the tool, their
	# contents; the third boot runs the packaged kernel, its modules and
	# the packaged tool (blksnap_package checks that it does).
	pkgroot=
	if "$REPO/harness/deb.sh" build; then
		echo "OK   deb:build" >>"$report"
		"$REPO/harness/deb.sh" check | collect || stage_failed deb:check "deb.sh check exited early"
		if "$REPO/harness/deb.sh" unpack "$rundir/pkgroot"; then
			pkgroot=$rundir/pkgroot
		else
			stage_failed deb:unpack "see the output above"
		fi
	else
		stage_failed deb:build "see the output above"
	fi
	if [ -n "$pkgroot" ]; then
		log "boot: again, the packaged kernel and the blksnap tool end to end"
		BLKSNAP_PKGROOT=$pkgroot BLKSNAP_ONLY=$PKG_BOOT,$TOOL_BOOT BLKSNAP_APPEND="kunit.enable=0" \
			"$REPO/harness/run-qemu.sh" test test "$rundir/guest-tool"
		# The host side of "the packaged kernel booted": QEMU was given the
		# package's vmlinuz (and, below, the guest's package checks ran).
		booted=$(cat "$rundir/guest-tool/booted-kernel" 2>/dev/null || true)
		case $booted in
		"$pkgroot"/boot/vmlinuz-*) echo "OK   deb:boot:kernel-from-package" >>"$report" ;;
		*) stage_failed deb:boot:kernel-from-package "QEMU booted ${booted:-nothing}" ;;
		esac

	else
		log "boot: again, the blksnap tool end to end (no packages)"
		BLKSNAP_ONLY=$TOOL_BOOT BLKSNAP_APPEND="kunit.enable=0" \
			"$REPO/harness/run-qemu.sh" test test "$rundir/guest-tool"
	fi
	python3 "$REPO/harness/results.py" "$rundir/guest-tool" >"$rundir/guest-tool.txt"
	grep -v '^RESULT ' "$rundir/guest-tool.txt" >>"$report"
	# A program that never started reports nothing, which counts as no
	# failure: that the tool's scenarios ran is a check of its own.
	if grep -qE "^(OK  |FAIL|SKIP) ([a-z_]+:)?$TOOL_BOOT(: |  #)" "$rundir/guest-tool.txt"; then
		echo "OK   boot:$TOOL_BOOT-ran" >>"$report"
	else
		stage_failed "boot:$TOOL_BOOT-ran" "no $TOOL_BOOT result from the guest"
	fi
	if [ -n "$pkgroot" ]; then
		if grep -q "blksnap_package" "$rundir/guest-tool.txt"; then
			echo "OK   deb:boot:package-checks-ran" >>"$report"
		else
			stage_failed deb:boot:package-checks-ran "no blksnap_package result from the guest"
		fi
	fi
else
	stage_failed build:test-kernel "see the build output above"
fi

# Debian's own configuration with Rust and blksnap: no option dropped, and
# our objects compile under it (not a whole kernel: far too long here).
"$REPO/harness/deb.sh" debconfig | collect || stage_failed debconfig "deb.sh debconfig exited early"

cat "$report"
passed=$(grep -c '^OK ' "$report" || true)
failed=$(grep -c '^FAIL ' "$report" || true)
skipped=$(grep -c '^SKIP ' "$report" || true)
log "test: $(($(date +%s) - t0)) s; logs in $rundir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
