# shellcheck shell=bash
# Kernel + initramfs preparation for scripts/vm. Sourced, not executed.
#
# vm_prepare sets:
#   VM_KVER     kernel version (e.g. 6.1.0-56-amd64)
#   VM_KERNEL   path of the cached vmlinuz
#   VM_INITRD   path of the cached initramfs (cpio)
#   VM_DIR      cache directory for that kernel
#
# Environment:
#   GRE_HOOK_VM_CACHE       cache root (default /var/cache/gre-hook-vm)
#   GRE_HOOK_VM_KERNEL_PKG  kernel package to use instead of the one
#                           linux-image-amd64 depends on
#   GRE_HOOK_VM_DEBUG=1     verbose

VM_CACHE=${GRE_HOOK_VM_CACHE:-/var/cache/gre-hook-vm}

# Loaded by the guest's init before it can mount its root.
VM_BOOT_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
# Only copied into the guest's /lib/modules/$(uname -r); loaded on demand
# (modprobe or the kernel's autoloading).
VM_TEST_MODULES=(
	ip_gre ip6_gre veth dummy 8021q
	iptable_mangle ip6table_mangle
	xt_TCPMSS xt_tcpudp xt_comment xt_devgroup xt_multiport xt_addrtype
	nf_tables nft_compat crc32c_generic
)

vm_log() { [[ ${GRE_HOOK_VM_DEBUG:-} != 1 ]] || echo "vm: $*" >&2; }
vm_die() {
	echo "vm: $*" >&2
	exit 125
}

# Run a command quietly; show its output only if it fails (or in debug mode).
vm_quiet() {
	local out rc=0
	if [[ ${GRE_HOOK_VM_DEBUG:-} == 1 ]]; then
		"$@" >&2 || rc=$?
		return $rc
	fi
	out=$("$@" 2>&1) || rc=$?
	((rc == 0)) || printf '%s\n' "$out" >&2
	return $rc
}

vm_have_lists() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

# Name of the kernel image package (linux-image-<kver>).
vm_kernel_pkg() {
	if [[ -n ${GRE_HOOK_VM_KERNEL_PKG:-} ]]; then
		echo "$GRE_HOOK_VM_KERNEL_PKG"
		return
	fi
	local pkg="" key="" k p memo=$VM_CACHE/kernel-pkg
	if vm_have_lists; then
		# apt-cache takes >1 s here: remember its answer for these lists.
		key=$(stat -c '%n %Y %s' /var/lib/apt/lists/*_Packages* | cksum | cut -d' ' -f1)
		if [[ -f $memo ]] && read -r k p <"$memo" && [[ $k == "$key" && -n $p ]]; then
			echo "$p"
			return
		fi
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
		if [[ -n $pkg ]] && mkdir -p "$VM_CACHE" 2>/dev/null; then
			echo "$key $pkg" >"$memo.$$" && mv "$memo.$$" "$memo"
		fi
	fi
	if [[ -z $pkg ]]; then
		# No lists (or no answer): use an already cached kernel if there is one,
		# so a machine without network still works.
		local d
		d=$(find "$VM_CACHE" -mindepth 2 -maxdepth 2 -name vmlinuz 2>/dev/null | sort -V | tail -n1)
		if [[ -n $d ]]; then
			d=${d%/vmlinuz}
			echo "linux-image-${d##*/}"
			return
		fi
		vm_quiet apt-get update -qq || vm_die "apt-get update failed"
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	fi
	[[ -n $pkg ]] || vm_die "cannot resolve the package linux-image-amd64 depends on"
	echo "$pkg"
}

# Fetch the kernel .deb into $VM_DIR/kernel.deb (once).
vm_fetch_kernel_deb() {
	local pkg=$1
	[[ -s $VM_DIR/kernel.deb ]] && return
	local dl
	dl=$(mktemp -d "${TMPDIR:-/tmp}/gre-hook-vm-dl.XXXXXX")
	chmod 755 "$dl"
	chown _apt "$dl" 2>/dev/null || true # lets apt download sandboxed
	vm_log "downloading $pkg"
	if ! (cd "$dl" && vm_quiet apt-get download -qq "$pkg"); then
		# Stale lists (the version is gone from the archive): refresh, retry.
		vm_quiet apt-get update -qq || true
		(cd "$dl" && vm_quiet apt-get download -qq "$pkg") || {
			rm -rf "$dl"
			vm_die "apt-get download $pkg failed"
		}
	fi
	local deb
	deb=$(find "$dl" -maxdepth 1 -name '*.deb' | head -n1)
	[[ -n $deb ]] || vm_die "apt-get download $pkg produced no .deb"
	mv "$deb" "$VM_DIR/kernel.deb.tmp" && mv "$VM_DIR/kernel.deb.tmp" "$VM_DIR/kernel.deb"
	rm -rf "$dl"
}

# The /init of the initramfs (PID 1 until switch_root).
vm_init_script() {
	cat <<'INIT'
#!/bin/busybox sh
# gre-hook-vm stage 1: mount the host root (9p, ro) under a tmpfs overlay.
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
	echo "gre-hook-vm init: $*" >&2
	poweroff -f
}
mkdir -p /proc /sys /dev /lower /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod "/lib/modules/$(uname -r)/$m" || fail "insmod $m"
done </etc/boot-modules

msize=262144 cache=loose layer=
for a in $(cat /proc/cmdline); do
	case $a in
	grehook.msize=*) msize=${a#*=} ;;
	grehook.cache=*) cache=${a#*=} ;;
	grehook.layer=1) layer=1 ;;
	esac
done
o=trans=virtio,version=9p2000.L,msize=$msize
mount -t 9p -o "ro,$o,cache=$cache" hostroot /lower || fail "cannot mount host root"
lower=/lower
# scripts/vm --layer: a host overlayfs upper directory over the root.
if [ -n "$layer" ]; then
	mkdir -p /layer
	mount -t 9p -o "ro,$o,cache=$cache" layer /layer || fail "cannot mount the layer"
	lower=/layer:/lower
fi
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=$lower,upperdir=/rw/upper,workdir=/rw/work root /newroot ||
	fail "cannot mount overlay root"

n=/newroot
mount --move /proc $n/proc
mount --move /sys $n/sys
mount --move /dev $n/dev
mkdir -p $n/dev/pts $n/dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts $n/dev/pts
mount -t tmpfs -o mode=1777 shm $n/dev/shm
mount -t tmpfs -o mode=0755 run $n/run
mount -t tmpfs -o mode=1777 tmp $n/tmp
v=$n/run/gre-hook-vm
mkdir -p $v/ctl $v/lower
mount -t 9p -o "$o" ctl $v/ctl || fail "cannot mount control share"
mount --bind /lower $v/lower
# --share DIRs: "tag path" lines.
if [ -f $v/ctl/shares ]; then
	while read -r tag path; do
		mkdir -p "$n$path"
		mount -t 9p -o "$o" "$tag" "$n$path" || fail "cannot mount share $path"
	done <$v/ctl/shares
fi
# The module subset, for modprobe and autoloading inside the guest.
mkdir -p $n/lib/modules
rm -rf "$n/lib/modules/$(uname -r)"
cp -a "/lib/modules/$(uname -r)" $n/lib/modules/
cp /bin/busybox /stage2 $v/
exec switch_root $n /run/gre-hook-vm/busybox sh /run/gre-hook-vm/stage2
INIT
}

# Stage 2: PID 1 in the overlay root. Runs the command, reports its status.
vm_stage2_script() {
	cat <<'STAGE2'
# gre-hook-vm stage 2 (run by busybox sh as PID 1 in the overlay root).
v=/run/gre-hook-vm
bb=$v/busybox
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
$bb hostname gre-hook-vm
$bb ip link set lo up 2>/dev/null
# dpkg -i would run man-db's trigger, which re-indexes every man page over
# 9p (many minutes under TCG). Turn it off, in the guest's overlay only.
$bb rm -f /var/lib/man-db/auto-update
# Host directories under /tmp the command needs (its cwd, its binary):
# overlay them (host side read-only) onto the guest's fresh /tmp.
if [ -f $v/ctl/tmpdirs ]; then
	i=0
	while read -r d; do
		i=$((i + 1))
		[ -d "$v/lower$d" ] || continue
		$bb mkdir -p "$d" "$v/tmpov/$i/u" "$v/tmpov/$i/w"
		$bb mount -t overlay -o "lowerdir=$v/lower$d,upperdir=$v/tmpov/$i/u,workdir=$v/tmpov/$i/w" tmpov "$d"
	done <$v/ctl/tmpdirs
fi
$bb stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo ready >$v/ctl/booted
/bin/sh $v/ctl/cmd </dev/null >/dev/ttyS1 2>&1
rc=$?
echo "$rc" >$v/ctl/status.tmp && $bb mv $v/ctl/status.tmp $v/ctl/status
$bb sync
$bb poweroff -f
STAGE2
}

# Resolve module names to .ko paths (relative to lib/modules/$kver), deps
# first, one per line, without duplicates. Built-in modules are skipped.
vm_resolve_modules() {
	local root=$1 kver=$2
	shift 2
	local m
	for m in "$@"; do
		modprobe -d "$root" -S "$kver" --show-depends "$m" ||
			vm_die "module $m not found in $kver"
	done | awk -v p="$root/lib/modules/$kver/" '
		$1 == "insmod" { f = $2; sub("^" p, "", f); if (!seen[f]++) print f }'
}

# Uncompressed ELF vmlinux out of an xz bzImage (Debian's) with a PVH note.
vm_extract_vmlinux() {
	local in=$1 out=$2 off
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$in" | head -n1 | cut -d: -f1)
	[[ -n $off ]] || return 1
	# (tail dies of SIGPIPE when xz stops at the stream's end: not an error.)
	tail -c "+$((off + 1))" "$in" | xz -dcq --single-stream >"$out" 2>/dev/null || true
	[[ $(head -c 4 "$out" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || return 1
	LC_ALL=C grep -qaF 'Xen' "$out" # XEN_ELFNOTE_PHYS32_ENTRY lives in a "Xen" note
}

vm_build_initramfs() {
	local hash=$1 pkg=$2 stage=$VM_DIR/build.$$
	rm -rf "$stage"
	mkdir -p "$stage"
	vm_fetch_kernel_deb "$pkg"
	vm_log "unpacking kernel $VM_KVER"
	local x=$stage/x
	dpkg -x "$VM_DIR/kernel.deb" "$x" || vm_die "dpkg -x failed"
	[[ -d $x/lib/modules/$VM_KVER ]] || vm_die "kernel.deb has no modules for $VM_KVER"
	vm_quiet depmod -b "$x" "$VM_KVER" || vm_die "depmod failed"

	local r=$stage/root md=lib/modules/$VM_KVER
	mkdir -p "$r/bin" "$r/etc" "$r/$md"
	local boot all f
	boot=$(vm_resolve_modules "$x" "$VM_KVER" "${VM_BOOT_MODULES[@]}") || exit
	all=$(vm_resolve_modules "$x" "$VM_KVER" "${VM_BOOT_MODULES[@]}" "${VM_TEST_MODULES[@]}") || exit
	printf '%s\n' "$boot" >"$r/etc/boot-modules"
	while read -r f; do
		mkdir -p "$r/$md/${f%/*}"
		cp "$x/$md/$f" "$r/$md/$f"
	done <<<"$all"
	cp "$x/$md"/modules.builtin "$x/$md"/modules.builtin.modinfo "$x/$md"/modules.order "$r/$md/"
	vm_quiet depmod -b "$r" "$VM_KVER" || vm_die "depmod (subset) failed"

	cp /bin/busybox "$r/bin/busybox"
	vm_init_script >"$r/init"
	vm_stage2_script >"$r/stage2"
	chmod 755 "$r/init"
	(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet >"$VM_DIR/initramfs.tmp") ||
		vm_die "cpio failed"
	cp "$x/boot/vmlinuz-$VM_KVER" "$VM_DIR/vmlinuz.tmp"
	mv "$VM_DIR/vmlinuz.tmp" "$VM_DIR/vmlinuz"
	# Decompressing the bzImage takes ~6 s under TCG: boot the uncompressed
	# ELF vmlinux instead (QEMU loads it through its PVH entry point).
	rm -f "$VM_DIR/vmlinux"
	if vm_extract_vmlinux "$VM_DIR/vmlinuz" "$VM_DIR/vmlinux.tmp"; then
		mv "$VM_DIR/vmlinux.tmp" "$VM_DIR/vmlinux"
	else
		rm -f "$VM_DIR/vmlinux.tmp"
	fi
	mv "$VM_DIR/initramfs.tmp" "$VM_DIR/initramfs.$hash"
	rm -rf "$stage"
}

# The hash of everything the initramfs is built from.
vm_hash() {
	{
		echo "recipe 2 (vmlinux)"
		vm_init_script
		vm_stage2_script
		echo "${VM_BOOT_MODULES[*]}"
		echo "${VM_TEST_MODULES[*]}"
		cksum </bin/busybox
	} | sha256sum | cut -d' ' -f1
}

vm_prepare() {
	[[ -x /bin/busybox ]] || vm_die "busybox-static missing (run scripts/install-deps)"
	local pkg hash
	pkg=$(vm_kernel_pkg) || exit
	VM_KVER=${pkg#linux-image-}
	VM_DIR=$VM_CACHE/$VM_KVER
	hash=$(vm_hash)
	# One initramfs per recipe: checkouts of different revisions share the
	# cache without rebuilding it for each other.
	VM_INITRD=$VM_DIR/initramfs.$hash
	if ! [[ -s $VM_DIR/vmlinuz && -s $VM_INITRD ]]; then
		vm_prepare_locked "$pkg" "$hash"
	fi
	VM_KERNEL=$VM_DIR/vmlinuz
	# shellcheck disable=SC2034 # used by scripts/vm
	[[ -s $VM_DIR/vmlinux ]] && VM_KERNEL=$VM_DIR/vmlinux
	return 0
}

vm_prepare_locked() {
	local pkg=$1 hash=$2 lockfd
	mkdir -p "$VM_DIR"
	# Several scripts/vm may start at once (go test -exec): one builds.
	exec {lockfd}>"$VM_DIR/.lock"
	flock "$lockfd"
	if ! [[ -s $VM_DIR/vmlinuz && -s $VM_INITRD ]]; then
		(vm_build_initramfs "$hash" "$pkg") || {
			rm -rf "$VM_DIR/build.$$"
			exec {lockfd}>&-
			vm_die "cannot build the kernel/initramfs for $VM_KVER"
		}
	fi
	exec {lockfd}>&-
}
