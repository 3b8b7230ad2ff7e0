#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The guest runs the packaged kernel (selftest program "blksnap_package",
# in a guest that run-qemu.sh packed from BLKSNAP_PKGROOT, the linux-image
# and blksnap packages unpacked as dpkg installs them): the running kernel
# is the package's release and build, its modules and the tool are the
# packages' files, checked as `dpkg --verify` would, against the packages'
# md5sums, and blksnap loads from them.
# KTAP-like output: "ok N name" or "not ok N name # why".

STATUS=/var/lib/dpkg/status
INFO=/var/lib/dpkg/info
echo "1..7"
n=0
result() { # ok|fail name [why]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n $2"; else echo "not ok $n $2 # $3"; fi
}
check() { # name why command...
	name=$1 why=$2
	shift 2
	if "$@"; then result ok "$name"; else result fail "$name" "$why"; fi
}
# Field $2 of package $1 in the status file.
field() {
	awk -v p="$1" -v f="$2:" '$1 == "Package:" { cur = $2 } cur == p && $1 == f { print $2 }' $STATUS
}
# Files of md5sums list $1 under directory $2 that are missing or do not
# match, one line each.
verify() {
	grep "  $2/" "$1" >/tmp/verify.md5
	[ -s /tmp/verify.md5 ] || { echo "no $2 in $1"; return; }
	(cd / && md5sum -c /tmp/verify.md5 2>&1 | grep -v ': OK$')
}

image=$(awk '$1 == "Package:" && $2 ~ /^linux-image-/ { print $2 }' $STATUS | head -n1)
release=${image#linux-image-}
version=$(field "$image" Version)
revision=${version##*-}
echo "# package: $image $version"
echo "# uname -r: $(uname -r); uname -v: $(uname -v)"
check "package:uname-r-is-the-package-release" "running $(uname -r), package ${image:-none}" \
	[ "$(uname -r)" = "${release:-none}" ]
# debian/rules builds with KBUILD_BUILD_VERSION=<revision>: "#<revision> SMP ...".
case "$(uname -v)" in
"#$revision "*) result ok "package:uname-v-is-the-package-build" ;;
*) result fail "package:uname-v-is-the-package-build" "uname -v: $(uname -v), package revision $revision" ;;
esac
bad=$(verify $INFO/"$image".md5sums "lib/modules/$release")
check "package:modules-are-the-package-files" "$(echo "$bad" | head -3 | tr '\n' '|')" \
	[ -z "$bad" ]
check "package:blksnap.ko-from-the-package" "not in $INFO/$image.md5sums" \
	grep -q "lib/modules/$release/kernel/drivers/block/blksnap_rs/blksnap.ko$" $INFO/"$image".md5sums
out=$(modprobe blksnap 2>&1)
check "package:modprobe-blksnap" "$out" [ -d /sys/module/blksnap ]
tool=$(command -v blksnap)
check "package:tool-is-/usr/sbin/blksnap" "blksnap on PATH: ${tool:-none}" [ "$tool" = /usr/sbin/blksnap ]
bad=$(verify $INFO/blksnap.md5sums usr/sbin)
check "package:tool-is-the-package-file" "$bad" [ -z "$bad" ]
