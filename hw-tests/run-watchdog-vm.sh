#!/usr/bin/env bash
# The watchdog rig (issue 12 item 5): capbox's supervisor against a real
# kernel watchdog, softdog and QEMU's i6300esb, in a QEMU VM booted once
# per case with -no-reboot, so a watchdog reset ends QEMU. The host stamps
# every serial line as it arrives and measures from the guest's mark
# (`WDVM-MARK hang` right before SIGSTOP, `WDVM-MARK stall` right before
# the fault injection) to QEMU's exit. A reset is told from a power-off by
# the serial log: a guest that finished prints `init: watchdog-guest exit
# code N` and ends QEMU through isa-debug-exit (odd exit status); a reset
# ends QEMU with 0 and no such line.
#
# Per device, in order (see hw-tests/watchdog/main.rs for the checks):
#   hang 1..H   SIGSTOP capbox -> reset within timeout + 2 s (the bar); the
#               runs share a persistent ext4 data disk (virtio) with the
#               reset log, run k must see k-1 resets in the last hour
#   guard       same disk, reboot_guard_resets = H: capbox starts without
#               arming, /status and `capbox status` say why; no reset
#   stall       a mux runner's heartbeat stuck -> reset within
#               stall_after + timeout + 3 s
#   reboot      (i6300esb only: softdog's bootstatus is always 0) one QEMU
#               without -no-reboot: boot 1 hangs, the VM resets in place,
#               boot 2 sees the driver's bootstatus (card reset) and
#               capbox's last_cause names it
#   clean       the card manager's heartbeat stuck -> restarted, no reset
#               over stall_after + timeout + 3 s; then C times start,
#               armed, SIGTERM, magic close, no reset over timeout + 3 s
#
# Exit: 0 all checks passed, 1 checks failed, 2 the rig could not be built
# or booted. The summary line `watchdog-vm: P passed, F failed`, then the
# figures as BENCHMARKS.md rows (`WDVM figures …`).
#
# Environment: CAPBOX_HW_CACHE (as run-vm.sh); CAPBOX_WD_DEVICES
# (softdog,i6300esb); CAPBOX_WD_CASES (hang,guard,stall,reboot,clean);
# CAPBOX_WD_HANG_RUNS (5); CAPBOX_WD_CLEAN_RUNS (10); CAPBOX_WD_TIMEOUT
# ([supervisor] watchdog_timeout_s, 5); CAPBOX_WD_STALL (stall_after_s, 3; capbox wants it below the timeout);
# CAPBOX_WD_IMPL (capbox, or standin: busybox's watchdog applet instead of
# capbox, which checks the rig itself: only hang and clean, no capbox
# checks); CAPBOX_WD_STOP_SIGNAL (TERM; KILL stops capbox without the
# magic close in the clean case: the checks must then fail, the VM resets);
# CAPBOX_HW_TIMEOUT (seconds per boot, default 240).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
boot_timeout=${CAPBOX_HW_TIMEOUT:-240}
devices=${CAPBOX_WD_DEVICES:-softdog,i6300esb}
cases=${CAPBOX_WD_CASES:-hang,guard,stall,reboot,clean}
hang_runs=${CAPBOX_WD_HANG_RUNS:-5}
clean_runs=${CAPBOX_WD_CLEAN_RUNS:-10}
wd_timeout=${CAPBOX_WD_TIMEOUT:-5}
wd_stall=${CAPBOX_WD_STALL:-3}
impl=${CAPBOX_WD_IMPL:-capbox}
case $impl in capbox | standin) ;; *) echo "run-watchdog-vm: CAPBOX_WD_IMPL is capbox or standin" >&2; exit 2 ;; esac

stamp() { echo "run-watchdog-vm: $*"; }
die() { echo "run-watchdog-vm: FAILED: $*" >&2; exit 2; }

# ---- 1. packages ----
rig_install qemu-system-x86 busybox-static kmod xz-utils cpio bc e2fsprogs libpcsclite1
stamp() { printf 'run-watchdog-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
kver=$(rig_kernel_version)
stamp "kernel $kver"

# ---- 2. kernel image + modules (the cache shared with run-vm.sh) ----
rig_lock
rig_fetch_kernel "$kver"
flock -u 9
rig_vmlinux
run=$(mktemp -d "$cache/watchdog.XXXXXX")
trap 'rm -rf "$run"' EXIT

# ---- 3. the guest program (dynamic, default features: the card manager) ----
stamp "building the in-VM program"
rig_example watchdog-guest

# ---- 4. initramfs ----
stamp "packing the initramfs"
ird=$run/initramfs
mkdir -p "$ird"/{dev,proc,sys,tmp,run,etc,srv,data}
rig_busybox "$ird" sh ip mount umount modprobe insmod lsmod dd cat echo ls sleep poweroff uname dmesg printf head grep mkdir
rig_with_libs "$ird" "$rig_example_bin" /bin/watchdog-guest
strip "$ird/bin/watchdog-guest"
ln -sf watchdog-guest "$ird/bin/capbox"
# The card manager loads libpcsclite.so.1 at run time (ldd does not name
# it); with it and no pcscd its loop turns every ≤ 2 s (without it, every
# 5 s: LIBRARY_RETRY).
pcsclib=$(ldconfig -p | sed -n 's/^\s*libpcsclite\.so\.1 (.*) => //p' | head -1)
[ -n "$pcsclib" ] || die "libpcsclite.so.1 not found (Debian package libpcsclite1)"
rig_with_libs "$ird" "$pcsclib"
rig_modules "$ird" softdog i6300esb virtio_pci virtio_blk ext4 crc32c_generic
stamp "modules:$rig_modules_seen"
cp "$repo/slates/mpeg2-576i25-mp2.ts" "$ird/srv/slate.ts"
cp "$here/watchdog/init" "$ird/init"
chmod +x "$ird/init"
rig_pack "$ird" "$run/initramfs.cpio"
stamp "initramfs $(du -h "$run/initramfs.cpio" | cut -f1)"

# ---- 5. boots ----
passes=0
failures=0
check() { # check NAME OK(0|1) DETAIL
    if [ "$2" = 1 ]; then
        passes=$((passes + 1)); echo "PASS $1: $3"
    else
        failures=$((failures + 1)); echo "FAIL $1: $3"
    fi
}
logs=$cache/watchdog-vm-logs
rm -rf "$logs" && mkdir -p "$logs"

# boot NAME DEVICE CASE [KEY=VALUE ...] (wd.* kernel parameters; disk=IMG
# attaches IMG as the guest's /dev/vda). Sets boot_rc (QEMU's exit status),
# boot_log (stamped serial log: "EPOCH line"), boot_end (EPOCH at QEMU's
# exit) and boot_reset (1 when QEMU ended by a reset, not by the guest).
boot() {
    local name=$1 dev=$2 case=$3 extra=() params disk="" line
    shift 3
    params="wd.dev=$dev wd.case=$case wd.impl=$impl wd.timeout=$wd_timeout wd.stall=$wd_stall"
    for kv in "$@"; do
        case $kv in
            disk=*) disk=${kv#disk=}; params="$params wd.disk=1" ;;
            *) params="$params wd.$kv" ;;
        esac
    done
    [ "$dev" = i6300esb ] && extra+=(-device i6300esb -watchdog-action reset)
    [ "$case" = reboot ] || extra+=(-no-reboot)
    [ -n "$disk" ] && extra+=(-drive "file=$disk,format=raw,if=virtio")
    boot_log=$logs/$name.log
    stamp "boot $name: $params"
    : >"$boot_log"
    set +e
    { timeout "$boot_timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp 1 -m 384 \
        -nographic -nodefaults -serial stdio \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 "${extra[@]}" \
        -kernel "$kernel" -initrd "$run/initramfs.cpio" \
        -append "console=ttyS0 quiet panic=-1 $params" </dev/null 2>&1
      echo "$?" >"$run/rc"; } | while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s %s\n' "$EPOCHREALTIME" "$line" >>"$boot_log"
        case $line in PASS* | FAIL* | WDVM-MARK* | init:* | guest:* | "capbox status:"* | *supervisor:* | *softdog:* | *i6300esb*) echo "  $name| $line" ;; esac
    done
    boot_end=$EPOCHREALTIME
    set -e
    boot_rc=$(cat "$run/rc")
    boot_reset=0
    if [ "$boot_rc" = 0 ] && ! grep -q ' init: watchdog-guest exit code' "$boot_log"; then
        boot_reset=1
    fi
    # The guest's own PASS/FAIL lines count.
    passes=$((passes + $(grep -c '^[0-9.]* PASS ' "$boot_log" || true)))
    failures=$((failures + $(grep -c '^[0-9.]* FAIL ' "$boot_log" || true)))
    [ "$boot_rc" = 124 ] && check "$name" 0 "the VM timed out after ${boot_timeout}s (log: $boot_log)"
    return 0
}

# Seconds from the guest's mark line MARK to QEMU's exit, or "" without it.
since_mark() {
    local t
    t=$(grep -m1 "^[0-9.]* WDVM-MARK $1" "$boot_log" | cut -d' ' -f1)
    [ -n "$t" ] || return 1
    printf '%.2f' "$(echo "$boot_end - $t" | bc -l)"
}

# A boot that must end in a watchdog reset after MARK within BAR seconds.
expect_reset() { # NAME MARK BAR
    local secs
    secs=$(since_mark "$2" || true)
    if [ -z "$secs" ]; then
        check "$1: reset" 0 "the guest never reached the '$2' mark (QEMU rc $boot_rc; log: $boot_log)"
    elif [ "$boot_reset" != 1 ]; then
        check "$1: reset" 0 "no reset: the guest finished (QEMU rc $boot_rc; log: $boot_log)"
    else
        check "$1: reset" "$(echo "$secs <= $3" | bc)" "VM reset ${secs} s after the $2 mark (bar ${3} s)"
    fi
}

# A boot that must end by the guest's own report, with no reset.
expect_no_reset() { # NAME
    if [ "$boot_reset" = 1 ]; then
        check "$1: no reset" 0 "the VM RESET (QEMU ended with 0 and no guest report; log: $boot_log)"
    elif [ $((boot_rc % 2)) = 1 ]; then
        check "$1: no reset" 1 "the guest ran to its end ($(((boot_rc - 1) / 2)) failed check(s) in it)"
    else
        check "$1: no reset" 0 "QEMU ended with $boot_rc (log: $boot_log)"
    fi
}

figures=()
for dev in ${devices//,/ }; do
    case $dev in softdog | i6300esb) ;; *) die "unknown watchdog device '$dev' (softdog, i6300esb)" ;; esac
    disk=$run/data-$dev.img
    mkfs.ext4 -q -F "$disk" 16M >/dev/null || die "mkfs.ext4 $disk failed"
    hang_secs=()
    if [[ ,$cases, == *,hang,* ]]; then
        for k in $(seq 1 "$hang_runs"); do
            boot "$dev-hang-$k" "$dev" hang "run=$k" "guard=$hang_runs" "disk=$disk"
            expect_reset "$dev hang run $k" hang "$((wd_timeout + 2))"
            hang_secs+=("$(since_mark hang || echo '-')")
        done
        sorted=$(printf '%s\n' "${hang_secs[@]}" | grep -v '^-$' | sort -n || true)
        n=$(echo "$sorted" | grep -c . || true)
        median=-
        [ "$n" -gt 0 ] && median=$(echo "$sorted" | awk '{v[NR] = $1} END {
            printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
        figures+=("| $dev | $impl | hang (SIGSTOP) → reset, s | $wd_timeout | ${hang_secs[*]} | $median | $((wd_timeout + 2)) |")
    fi
    if [[ ,$cases, == *,guard,* ]]; then
        if [ "$impl" = standin ]; then
            echo "SKIP $dev guard: the stand-in has no reboot-loop guard (capbox only)"
        else
            boot "$dev-guard" "$dev" guard "guard=$hang_runs" "disk=$disk"
            expect_no_reset "$dev reboot-loop guard"
        fi
    fi
    if [[ ,$cases, == *,stall,* ]]; then
        if [ "$impl" = standin ]; then
            echo "SKIP $dev stall: the stand-in has no heartbeats (capbox only)"
        else
            boot "$dev-stall" "$dev" stall
            bar=$((wd_stall + wd_timeout + 3))
            expect_reset "$dev mux stall" stall "$bar"
            figures+=("| $dev | $impl | mux heartbeat stuck → reset, s | $wd_timeout (stall_after $wd_stall) | $(since_mark stall || echo -) | | $bar |")
        fi
    fi
    if [[ ,$cases, == *,reboot,* ]] && [ "$dev" = i6300esb ] && [ "$impl" = capbox ]; then
        disk2=$run/data-$dev-reboot.img
        mkfs.ext4 -q -F "$disk2" 16M >/dev/null || die "mkfs.ext4 $disk2 failed"
        boot "$dev-reboot" "$dev" reboot "disk=$disk2"
        expect_no_reset "$dev in-place reboot (the guest's boot 2 reported)"
        boots=$(grep -c ' guest: case reboot ' "$boot_log" || true)
        check "$dev in-place reboot: boots" "$([ "$boots" = 2 ] && echo 1 || echo 0)" \
            "$boots boot(s) in one QEMU (want 2: the hang, then the one that reports)"
    fi
    if [[ ,$cases, == *,clean,* ]]; then
        boot "$dev-clean" "$dev" clean "runs=$clean_runs" "stop=${CAPBOX_WD_STOP_SIGNAL:-TERM}"
        expect_no_reset "$dev clean stops"
        ok=$(grep -c "^[0-9.]* PASS $dev clean stop [0-9]*/$clean_runs: no reset" "$boot_log" || true)
        magic=$(grep -c "^[0-9.]* PASS $dev clean stop [0-9]*/$clean_runs: magic close" "$boot_log" || true)
        check "$dev clean stops" "$([ "$ok" = "$clean_runs" ] && [ "$magic" = "$clean_runs" ] && echo 1 || echo 0)" \
            "$ok of $clean_runs without a reset over $((wd_timeout + 3)) s, $magic of $clean_runs with the magic close"
        figures+=("| $dev | $impl | clean stops (SIG${CAPBOX_WD_STOP_SIGNAL:-TERM}) without a reset | $wd_timeout | $ok/$clean_runs | | $clean_runs/$clean_runs |")
    fi
done

echo "watchdog-vm: $passes passed, $failures failed"
echo "WDVM figures ($(date -u +%Y-%m-%d), QEMU $(qemu-system-x86_64 --version | head -1 | grep -o '[0-9][0-9.]*' | head -1) TCG, kernel $kver, $(nproc) host cores):"
echo "| watchdog | watched | what | timeout s | per run | median | bar |"
echo "|---|---|---|---|---|---|---|"
[ ${#figures[@]} -eq 0 ] || printf '%s\n' "${figures[@]}"
echo "run-watchdog-vm: serial logs in $logs"
echo "run-watchdog-vm: total $(echo "$(date +%s.%N) - $T0" | bc) s"
[ "$failures" = 0 ] || exit 1
