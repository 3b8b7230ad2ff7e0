#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything the build, boot and test loop needs.  Idempotent: a
# second run only checks.  Reaches only Debian's archive and crates.io.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(clang-19 lld-19 llvm-19 libclang-19-dev bc flex bison
	libelf-dev libssl-dev cpio kmod qemu-system-x86 busybox-static
	e2fsprogs fdisk util-linux rsync python3 gcc libc6-dev make perl git xz-utils
	curl ca-certificates fio dmsetup gcc-multilib file
	dpkg-dev debhelper lintian libbpf1 libdw-dev)
# dpkg-dev, debhelper and libdw-dev (a build dependency that 7.3's
# mkdebian declares): `make bindeb-pkg` (dpkg-buildpackage, dh_*) and
# the tool's package (harness/deb.sh), which lintian checks.  libbpf1 for
# the private pahole below.

install_apt() {
	local missing=()
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# apt-get against trixie-backports through a private sources list, so that the
# bookworm system never learns about trixie.
TRIXIE=$CACHE/apt-trixie
trixie_apt() {
	local cmd=$1
	shift
	"$cmd" -o Dir::Etc::SourceList="$TRIXIE/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$TRIXIE/lists" \
		-o Dir::Cache::Archives="$TRIXIE/archives" \
		-o Debug::NoLocking=1 "$@"
}

trixie_init() {
	mkdir -p "$TRIXIE/lists/partial" "$TRIXIE/archives/partial"
	local keys=/usr/share/keyrings/debian-archive-trixie-stable.gpg
	keys+=,/usr/share/keyrings/debian-archive-trixie-automatic.gpg
	echo "deb [signed-by=$keys] http://deb.debian.org/debian $KERNEL_SUITE main" \
		>"$TRIXIE/sources.list"
	if [ -z "$(find "$TRIXIE/lists" -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
		trixie_apt apt-get update -qq
	fi
}

# Download one package version into $TRIXIE and print the .deb path.
trixie_fetch() {
	local pkg=$1 ver=$2 deb
	deb=$(ls "$TRIXIE/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$TRIXIE" && trixie_apt apt-get download -qq "$pkg=$ver" 2>/dev/null)
		deb=$(ls "$TRIXIE/${pkg}_${ver//:/%3a}_"*.deb | head -n1)
	fi
	echo "$deb"
}

fetch_kernel() {
	local stamp=$PRISTINE/.blksnap-version ver=$KERNEL_VERSION_PIN
	if [ -f "$stamp" ]; then
		log "kernel: $(cat "$stamp") already extracted"
		return 0
	fi
	if ! trixie_apt apt-cache madison "$KERNEL_PKG" | grep -qF "| $ver |"; then
		ver=$(trixie_apt apt-cache madison "$KERNEL_PKG" | awk '{print $3}' |
			sort -V | tail -n1)
		[ -n "$ver" ] || die "$KERNEL_PKG is not in $KERNEL_SUITE"
		log "WARNING: pinned $KERNEL_PKG $KERNEL_VERSION_PIN is gone;"
		log "WARNING: FALLING BACK TO $ver, WHICH WAS NOT VERIFIED"
	fi
	local deb tmp
	deb=$(trixie_fetch "$KERNEL_PKG" "$ver")
	tmp=$(mktemp -d "$CACHE/extract.XXXX")
	dpkg-deb -x "$deb" "$tmp"
	rm -rf "$PRISTINE" && mkdir -p "$PRISTINE"
	tar -xJf "$tmp"/usr/src/linux-source-7.3.tar.xz -C "$PRISTINE" --strip-components=1
	rm -rf "$tmp"
	echo "$KERNEL_PKG $ver" >"$stamp"
	log "kernel: extracted $KERNEL_PKG $ver"
}

# Debian's rust-src of exactly the rustc version, so that the core library the
# kernel builds matches the compiler, clippy and rustfmt.
fetch_rust_src() {
	local rv ver deb tmp
	rv=$(rustc --version | awk '{print $2}')
	if [ -f "$TOOLS/rust-src/.version" ] && [ "$(cat "$TOOLS/rust-src/.version")" = "$rv" ]; then
		return 0
	fi
	ver=$(trixie_apt apt-cache madison rust-src | awk '{print $3}' |
		grep "^$rv+" | sort -V | tail -n1)
	[ -n "$ver" ] || die "no Debian rust-src for rustc $rv in $KERNEL_SUITE"
	deb=$(trixie_fetch rust-src "$ver")
	tmp=$(mktemp -d "$CACHE/extract.XXXX")
	dpkg-deb -x "$deb" "$tmp"
	rm -rf "$TOOLS/rust-src" && mkdir -p "$TOOLS/rust-src"
	mv "$tmp"/usr/lib/rustlib/src/rust/library "$TOOLS/rust-src/library"
	rm -rf "$tmp"
	echo "$rv" >"$TOOLS/rust-src/.version"
	log "rust-src: Debian $ver for rustc $rv"
}

install_bindgen() {
	[ -x "$TOOLS/cargo/bin/bindgen" ] && return 0
	log "bindgen-cli: cargo install (a few minutes)"
	cargo install -q --locked --root "$TOOLS/cargo" bindgen-cli
}

# The blksnap tool's crates, at the versions of its Cargo.lock (crates.io),
# so that later builds need no network.  Its static build links glibc's
# libc.a (libc6-dev); `file` checks that it is static.
fetch_tool_crates() {
	(cd "$REPO/tools/blksnap" && cargo fetch -q --locked)
}

# Debian's own kernel configuration for amd64, of the pinned kernel's
# version (the linux-config package is built from the same source package),
# for harness/deb.sh debconfig.
DEBIAN_CONFIG_PKG=linux-config-7.3
fetch_debian_config() {
	local dest=$TOOLS/debian-config deb tmp ver
	# The version of the source actually extracted (the pin, or what
	# fetch_kernel fell back to, loudly).
	ver=$(awk '{print $2}' "$PRISTINE/.blksnap-version")
	[ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$ver" ] && return 0
	if ! trixie_apt apt-cache madison "$DEBIAN_CONFIG_PKG" | grep -qF "| $ver |"; then
		log "WARNING: $DEBIAN_CONFIG_PKG $ver is not in $KERNEL_SUITE;"
		ver=$(trixie_apt apt-cache madison "$DEBIAN_CONFIG_PKG" | awk '{print $3}' |
			sort -V | tail -n1)
		[ -n "$ver" ] || die "$DEBIAN_CONFIG_PKG is not in $KERNEL_SUITE"
		log "WARNING: USING ITS $ver, WHICH WAS NOT VERIFIED"
	fi
	deb=$(trixie_fetch "$DEBIAN_CONFIG_PKG" "$ver")
	[ -n "$deb" ] && [ -f "$deb" ] || die "could not download $DEBIAN_CONFIG_PKG $ver"
	tmp=$(mktemp -d "$CACHE/extract.XXXX")
	dpkg-deb -x "$deb" "$tmp"
	rm -rf "$dest" && mkdir -p "$dest"
	xz -dc "$tmp/usr/src/$DEBIAN_CONFIG_PKG/config.amd64_none_amd64.xz" >"$dest/config.amd64_none_amd64"
	rm -rf "$tmp"
	echo "$ver" >"$dest/.version"
	log "debian config: $DEBIAN_CONFIG_PKG $ver"
}

# pahole (bookworm's), extracted, never installed: Debian's configuration
# keeps BTF only with it (and Rust needs one with --lang_exclude), but a
# pahole on PATH would change CONFIG_PAHOLE_VERSION of every other build
# directory and rebuild all their Rust.  Only deb.sh debconfig uses it.
PAHOLE_PIN=1.24-4.1
fetch_pahole() {
	local dest=$TOOLS/pahole deb tmp
	[ -x "$dest/usr/bin/pahole" ] && return 0
	tmp=$(mktemp -d "$CACHE/extract.XXXX")
	# Bookworm's 1.24, the version the README's results are for; any other
	# only with a warning.
	(cd "$tmp" && { apt-get download -qq "pahole=$PAHOLE_PIN" 2>/dev/null ||
		{ apt-get update -qq && apt-get download -qq "pahole=$PAHOLE_PIN"; } ||
		{ log "WARNING: pahole $PAHOLE_PIN is gone; USING THE NEWEST, NOT VERIFIED" &&
			apt-get download -qq pahole; }; }) || die "apt-get download pahole"
	rm -rf "$dest" && mkdir -p "$dest"
	dpkg-deb -x "$tmp"/pahole_*.deb "$dest"
	rm -rf "$tmp"
	log "pahole: $("$dest/usr/bin/pahole" --version) in $dest"
}

mkdir -p "$CACHE" "$TOOLS"
# The one thing the machine must bring: bookworm's rustc is older than the
# kernel's Rust accepts, and rust-src is fetched to match this rustc.
for cmd in rustc cargo; do
	command -v "$cmd" >/dev/null || die "no $cmd: install a Rust toolchain with rustup first (README)"
done
install_apt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || log "WARNING: clippy missing"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || log "WARNING: rustfmt missing"
fetch_tool_crates
trixie_init
fetch_kernel
fetch_rust_src
install_bindgen
fetch_debian_config
fetch_pahole
log "setup: done ($(cat "$PRISTINE/.blksnap-version"), rustc $(rustc --version | awk '{print $2}'), $(bindgen --version))"
