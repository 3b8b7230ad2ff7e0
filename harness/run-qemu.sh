#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# run-qemu.sh FLAVOUR MODE RUNDIR: pack the guest, boot it under QEMU/TCG and
# leave console.log (kernel) and results.log (tests) in RUNDIR.  A watchdog
# kills QEMU after BLKSNAP_TIMEOUT seconds; that counts as a failed run.
# BLKSNAP_PKGROOT=DIR (harness/deb.sh unpack DIR): boot the kernel of the
# linux-image package unpacked there, with its modules and the blksnap
# tool's package, instead of the build directory's kernel, modules and tool;
# the selftest program blksnap_package checks in the guest that it does.
source "$(dirname "$0")/lib.sh"

flavour=$1 mode=$2 rundir=$3
out=$OUT_BASE/$flavour
kernel=$out/arch/x86/boot/bzImage
pkgroot=${BLKSNAP_PKGROOT:-}
if [ -n "$pkgroot" ]; then
	pkgroot=$(cd "$pkgroot" && pwd)
	pkgrelease=$(ls "$pkgroot/lib/modules")
	kernel=$pkgroot/boot/vmlinuz-$pkgrelease
	[ -f "$kernel" ] && [ -x "$pkgroot/usr/sbin/blksnap" ] ||
		die "$pkgroot: not an unpacked linux-image and blksnap package (deb.sh unpack)"
fi
timeout_s=${BLKSNAP_TIMEOUT:-2400}
mkdir -p "$rundir"
rundir=$(cd "$rundir" && pwd)
# What QEMU boots, for test.sh to check that a package boot booted the
# package's kernel (the guest cannot tell: bindeb-pkg packs the same image).
echo "$kernel" >"$rundir/booted-kernel"
rm -f "$rundir"/{console,results}.log

# --- user space: busybox, our tools and the selftests, all static
root=$rundir/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,selftests}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$REPO/harness/guest/init" "$root/init"
cp "$REPO/harness/guest/budgets" "$root/budgets"
cp "$REPO/harness/guest/demo.sh" "$root/demo.sh"
cp "$REPO/harness/guest/bench.sh" "$root/bench.sh"
# The benchmark's knobs travel into the guest in a file it sources.
: >"$root/bench.env"
for v in BENCH_REPEAT BENCH_SIZE BENCH_LOOPS; do
	if [ -n "${!v:-}" ]; then echo "$v=${!v}" >>"$root/bench.env"; fi
done
chmod +x "$root/init"
echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

# ext4 tools for the tests and the demo, with the libraries they need.
mkdir -p "$root/usr/sbin" "$root/lib64" "$root/lib/x86_64-linux-gnu"
for tool in /usr/sbin/mke2fs /usr/sbin/e2fsck; do
	cp "$tool" "$root/usr/sbin/"
	for lib in $(ldd "$tool" | awk '$3 ~ /^\// {print $3}'); do
		cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
	done
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
# fio and dmsetup: the benchmark, and the tests' device-mapper stacks.
mkdir -p "$root/usr/bin"
for tool in /usr/bin/fio /sbin/dmsetup; do
	cp "$tool" "$root/usr/bin/"
	for lib in $(ldd "$tool" | awk '$3 ~ /^\// {print $3}'); do
		cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
	done
done
ln -sf mke2fs "$root/usr/sbin/mkfs.ext4"
ln -sf e2fsck "$root/usr/sbin/fsck.ext4"

kmake "$flavour" headers_install >/dev/null
hdr=$out/usr/include
# The blksnap tool (tools/blksnap), static, for the demo, the benchmark
# and its own scenarios; or its package's, where the package puts it.
if [ -n "$pkgroot" ]; then
	cp -p "$pkgroot/usr/sbin/blksnap" "$root/usr/sbin/blksnap"
else
	cp "$("$REPO/harness/tool.sh" build)" "$root/bin/blksnap"
fi

for dir in "$WORK"/tools/testing/selftests/blksnap; do
	suite=$(basename "$dir")
	sout=$out/selftests/$suite
	mkdir -p "$sout"
	make -s -C "$dir" OUTPUT="$sout" KHDR_INCLUDES="-isystem $hdr" \
		LDFLAGS=-static CC=gcc all >/dev/null
	mkdir -p "$root/selftests/$suite"
	progs=$(make -s -C "$dir" OUTPUT="$sout" -f - print-progs <<'MK'
include Makefile
print-progs:
	@echo $(notdir $(TEST_GEN_PROGS) $(TEST_PROGS))
MK
)
	for p in $progs; do
		cp "$sout/$p" "$root/selftests/$suite/" 2>/dev/null || cp "$dir/$p" "$root/selftests/$suite/"
	done
	# gcc-multilib comes with setup.sh; without it the i386 tests would
	# silently be missing from the count.
	case " $progs " in
	*" blksnap_tracker_32 "*) ;;
	*) die "selftests: the i386 programs were not built (gcc -m32 -static)" ;;
	esac
	echo "$progs" | tr ' ' '\n' >"$root/selftests/$suite/list"
	[ -f "$dir/settings" ] && cp "$dir/settings" "$root/selftests/$suite/"
done

# The tool's scenarios, as one more selftest program (BLKSNAP_ONLY=blksnap_tool
# runs just them); init runs the suites in the order of their names.
mkdir -p "$root/selftests/blksnap_tool"
cp "$REPO/harness/guest/tool-scenarios.sh" "$root/selftests/blksnap_tool/blksnap_tool"
chmod +x "$root/selftests/blksnap_tool/blksnap_tool"
echo blksnap_tool >"$root/selftests/blksnap_tool/list"

if [ -n "$pkgroot" ]; then
	# The packages as dpkg installs them: their files and their md5sums.
	mkdir -p "$root/lib" "$root/var/lib"
	cp -a "$pkgroot/lib/modules" "$root/lib/"
	cp -a "$pkgroot/var/lib/dpkg" "$root/var/lib/"
	[ -f "$root/lib/modules/$pkgrelease/modules.dep" ] || depmod -b "$root" "$pkgrelease"
	mkdir -p "$root/selftests/blksnap_package"
	cp "$REPO/harness/guest/package-check.sh" "$root/selftests/blksnap_package/blksnap_package"
	chmod +x "$root/selftests/blksnap_package/blksnap_package"
	echo blksnap_package >"$root/selftests/blksnap_package/list"
elif grep -q '^CONFIG_MODULES=y' "$out/.config"; then
	kmake "$flavour" INSTALL_MOD_PATH="$root" modules_install >/dev/null
fi
(cd "$root" && find . | cpio -o -H newc --quiet) >"$rundir/initramfs.cpio"

# --- disks: sparse files; for the tests vdb carries an MBR with two
# partitions, for the benchmark both are plain and large enough.  The
# benchmark's disks go to host tmpfs when it has room: on a disk-backed
# file the host's write-back of gigabytes of guest writes competes with
# QEMU for the same two cores, and shows up as noise in every ratio.
diskdir=$rundir
if [ "$mode" = bench ] &&
	[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')" -gt $((4 * 1024 * 1024)) ] 2>/dev/null; then
	diskdir=$(mktemp -d /dev/shm/blksnap-bench.XXXXXX)
	trap 'rm -rf "$diskdir"' EXIT
fi
echo "$diskdir" >"$rundir/diskdir"
truncate -s 0 "$diskdir/vda.img" "$diskdir/vdb.img"
if [ "$mode" = bench ]; then
	truncate -s 1G "$diskdir/vda.img"
	truncate -s 1536M "$diskdir/vdb.img"
else
	truncate -s 256M "$diskdir/vda.img"
	truncate -s 256M "$diskdir/vdb.img"
	printf 'label: dos\n,96M,L\n,,L\n' | sfdisk -q "$diskdir/vdb.img" >/dev/null
fi

# --- boot
append="console=ttyS0 panic=-1 blksnap_rs_mode=$mode"
# 64 MiB ramdisks (allocated as written) for the device lifecycle tests.
append+=" brd.rd_size=65536"
# A 1 TiB null_blk without memory backing, for the memory measurement.
[ "$mode" = bench ] && append+=" null_blk.gb=1024"
append+=" loglevel=7"
# Expedited RCU grace periods in the test kernel's guests (not in the
# benchmark, which measures): under TCG a normal synchronize_rcu() costs
# tens of milliseconds, and the kernel calls it with each disk deleted,
# loop device cleared or module unloaded, which the suite does thousands of
# times.  It narrows the windows of those races, checks nothing less.
[ "$flavour" = test ] && [ "$mode" != bench ] && append+=" rcupdate.rcu_expedited=1"
# BLKSNAP_ONLY=PROGRAM[,PROGRAM...] runs just those selftest programs (for
# debugging), in the order of the suite.
[ -n "${BLKSNAP_ONLY:-}" ] && append+=" blksnap_rs_only=$BLKSNAP_ONLY"
# BLKSNAP_SKIP=PROGRAM[,...] leaves programs out; BLKSNAP_APPEND adds kernel
# parameters (a program that needs its own boot runs in a second one).
[ -n "${BLKSNAP_SKIP:-}" ] && append+=" blksnap_rs_skip=$BLKSNAP_SKIP"
[ -n "${BLKSNAP_APPEND:-}" ] && append+=" $BLKSNAP_APPEND"
set +e
# 4-level paging (la57=off): with 5-level paging the KASAN kernel took, in
# about one boot of ten, a wild-memory-access report from a timer interrupt
# during identify_boot_cpu(), before any of our code runs.
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
	-machine q35 -accel tcg -cpu max,la57=off -smp 2 -m 2G \
	-display none -monitor none -no-reboot \
	-kernel "$kernel" -initrd "$rundir/initramfs.cpio" \
	-append "$append" \
	-drive file="$diskdir/vda.img",if=virtio,format=raw,cache=unsafe \
	-drive file="$diskdir/vdb.img",if=virtio,format=raw,cache=unsafe \
	-serial file:"$rundir/console.log" -serial file:"$rundir/results.log"
rc=$?
set -e
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
	log "qemu: killed by the watchdog after ${timeout_s}s"
	echo "BLKSNAP-WATCHDOG-TIMEOUT" >>"$rundir/results.log"
fi
exit 0
