#!/usr/bin/env bash
# The tunnel rig (issue 11 item 8): a ~10 Mbit/s channel from one capbox to
# another across a 120 ms RTT path with 0.5 % loss, inside a QEMU VM whose
# Debian kernel has netem (this host's kernel has none). Measures the rate
# the remote source sustains with the sender's congestion control at cubic
# and at bbr, the send buffer sized to the path; see hw-tests/tunnel/main.rs
# for the namespaces, phases and checks, and hw-tests/README.md.
#
# Steps (kernel and sample cached under $CAPBOX_HW_CACHE, shared with
# run-vm.sh; a warm run relinks one binary, packs and boots):
#   1. Debian packages: QEMU, busybox, kmod, cpio, iproute2 (ip, tc, ss go
#      into the VM), ffmpeg (the sample).
#   2. The Debian kernel image (same as run-vm.sh; its vmlinux if run-vm.sh
#      extracted one, else vmlinuz) and its veth, sch_netem, tcp_bbr modules.
#   3. The sample: ~10 Mbit/s MPEG-2 576i + MP2, 12 s, made once by ffmpeg
#      (CBR video, so the channel's own rate is ~10 Mbit/s after the remux,
#      which drops null packets).
#   4. The static in-VM program (example `tunnel-guest`, also /bin/capbox).
#   5. An initramfs: busybox, the modules + depmod, ip/tc/ss and their
#      shared libraries, the sample and a slate.
#   6. QEMU under TCG; the guest's exit code is the number of failed checks.
#
# Environment: CAPBOX_HW_CACHE; CAPBOX_HW_TIMEOUT (seconds for the VM,
# default 420); CAPBOX_TUNNEL_SECS (measured window of the cubic and bbr
# phases, default 30), CAPBOX_TUNNEL_WARMUP (5), CAPBOX_TUNNEL_CONTROL_SECS
# (10), CAPBOX_TUNNEL_SNDBUF (send_buffer_bytes of the sender, default
# 600000 = 4 × 10 Mbit/s × 120 ms), CAPBOX_TUNNEL_DELAY_MS (one way, 60),
# CAPBOX_TUNNEL_LOSS (percent each way, 0.5), CAPBOX_TUNNEL_RATE (netem
# rate each way in tc syntax, e.g. 50mbit; default none), CAPBOX_TUNNEL_PHASES
# (control,cubic,bbr), CAPBOX_TUNNEL_SMP (vCPUs, default 1: see below),
# CAPBOX_TUNNEL_MEM (MiB, 768).
#
# One vCPU by default: with two, a sender's segments leave from either CPU
# and veth queues them on that CPU's backlog, so the router forwards them
# out of order (ss showed reordering 46, reord_seen 24-65 per connection),
# a path the brief does not have and one that slows TCP's loss detection
# (RACK widens its reordering window). Two capboxes at 10 Mbit/s and the
# kernel's forwarding take about 40 % of one TCG vCPU.
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
vm_timeout=${CAPBOX_HW_TIMEOUT:-420}

stamp() { echo "run-tunnel-vm: $*"; }
die() { echo "run-tunnel-vm: FAILED: $*" >&2; exit 2; }

# ---- 1. packages ----
rig_install qemu-system-x86 busybox-static kmod xz-utils cpio bc iproute2 ffmpeg
stamp() { printf 'run-tunnel-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }

kver=$(rig_kernel_version)
stamp "kernel $kver"
rig_lock

# ---- 2. kernel image + modules ----
rig_fetch_kernel "$kver"
rig_vmlinux

# ---- 3. the sample ----
# v1: the recipe below; change the name when the recipe changes.
sample=$cache/tunnel-ten-10mbit-12s-v1.ts
sample_secs=12
if [ ! -s "$sample" ]; then
    stamp "making the ~10 Mbit/s sample with ffmpeg"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=720x576:rate=25,noise=alls=12:allf=t" \
        -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
        -t "$sample_secs" -map 0:v -map 1:a \
        -c:v mpeg2video -b:v 9600k -minrate 9600k -maxrate 9600k -bufsize 1835k -g 25 -bf 2 \
        -c:a mp2 -b:a 192k -ac 2 \
        -f mpegts "$sample.tmp" || die "ffmpeg could not make the sample"
    mv "$sample.tmp" "$sample"
fi
flock -u 9
stamp "sample $(stat -c %s "$sample") bytes = $(( $(stat -c %s "$sample") * 8 / sample_secs / 1000 )) kbit/s"

run=$(mktemp -d "$cache/tunnel.XXXXXX")
trap 'rm -rf "$run"' EXIT

# ---- 4. the static program ----
# As run-vm.sh: crt-static on the example's own link only, so the library
# built for the other tests is reused; no card manager (no dlopen).
stamp "building the in-VM program"
RIG_STATIC=1 rig_example tunnel-guest --no-default-features
guest=$rig_example_bin

# ---- 5. initramfs ----
stamp "packing the initramfs"
ird=$run/initramfs
mkdir -p "$ird"/{dev,proc,sys,tmp,run,etc,data}
rig_busybox "$ird" sh mount modprobe insmod lsmod dd cat echo ls sleep poweroff uname dmesg printf head grep mkdir ping
strip -o "$ird/bin/tunnel-guest" "$guest"
ln -sf tunnel-guest "$ird/bin/capbox"
# The kernel's modules for the path, with their dependencies (modinfo);
# tcp_diag lets ss show a connection's congestion control, RTT and rates.
rig_modules "$ird" veth sch_netem sch_tbf tcp_bbr tcp_diag sch_fq
stamp "modules:$rig_modules_seen"
# iproute2 (netns, veth, netem, ss) with its shared libraries, in /sbin:
# the guest calls them by path (busybox's shell prefers its own applets,
# and busybox's ip has no netns).
for b in /usr/sbin/ip /usr/sbin/tc /usr/bin/ss; do
    [ -x "$b" ] || b=$(command -v "$(basename "$b")") || die "$(basename "$b") missing (iproute2)"
    rig_with_libs "$ird" "$b" "/sbin/$(basename "$b")"
done
cp "$sample" "$ird/data/ten.ts"
cp "$repo/slates/mpeg2-576i25-mp2.ts" "$ird/data/slate.ts"
cp "$here/tunnel/init" "$ird/init"
chmod +x "$ird/init"
rig_pack "$ird" "$run/initramfs.cpio"
stamp "initramfs $(du -h "$run/initramfs.cpio" | cut -f1)"

# ---- 6. boot ----
params="tunnel.secs=${CAPBOX_TUNNEL_SECS:-30} tunnel.warmup=${CAPBOX_TUNNEL_WARMUP:-5}"
params="$params tunnel.control=${CAPBOX_TUNNEL_CONTROL_SECS:-10} tunnel.sndbuf=${CAPBOX_TUNNEL_SNDBUF:-600000}"
params="$params tunnel.delay=${CAPBOX_TUNNEL_DELAY_MS:-60} tunnel.loss=${CAPBOX_TUNNEL_LOSS:-0.5}"
params="$params tunnel.rate=${CAPBOX_TUNNEL_RATE:-} tunnel.phases=${CAPBOX_TUNNEL_PHASES:-control,cubic,bbr}"
params="$params tunnel.sample_secs=$sample_secs tunnel.sender_qdisc=${CAPBOX_TUNNEL_SENDER_QDISC:-none}"
params="$params tunnel.ss_every=${CAPBOX_TUNNEL_SS_EVERY:-0} tunnel.fail_after=${CAPBOX_TUNNEL_FAIL_AFTER_MS:-300}"
smp=${CAPBOX_TUNNEL_SMP:-1}
stamp "booting QEMU (tcg, -smp $smp): $params"
log=$cache/tunnel-vm.log
set +e
timeout "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp "$smp" -m "${CAPBOX_TUNNEL_MEM:-768}" \
    -nographic -no-reboot -nodefaults -serial stdio \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 $params" </dev/null | tee "$run/vm.log"
rc=${PIPESTATUS[0]}
set -e
cp "$run/vm.log" "$log" 2>/dev/null || true
stamp "QEMU exited with $rc"
rig_qemu_result run-tunnel-vm "$rc" "$log" "$vm_timeout" && result=0 || result=$?
echo "run-tunnel-vm: host CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) core(s)"
echo "run-tunnel-vm: total $(echo "$(date +%s.%N) - $T0" | bc) s"
exit $result
