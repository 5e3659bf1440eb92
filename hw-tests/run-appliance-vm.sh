#!/usr/bin/env bash
# The appliance rig (issue 13 item 3): builds the test image
# (images/build-test-image.sh: the disk layout, GRUB, overlay and init
# scripts of the Buildroot image, with Debian's kernel and a static musl
# capbox), boots it in QEMU under TCG with an i6300esb watchdog, user
# networking with capbox's port forwarded, and drives it as a technician
# does: over the serial console (a login shell on ttyS0) and HTTP from the
# host. One QEMU, two boots (the second after the watchdog reset).
#
# Boot 1: login prompt on ttyS0; capbox started by S60capbox (its keeper is
# the parent); the default config installed on first boot; /status through
# the forwarded port; the watchdog armed (supervisor.watchdog.armed); the
# first served byte of the default slate channel (timed from QEMU's start);
# capbox's log in syslog; the keeper restarts a killed capbox; vidtv
# (/data/capbox/modules) tuned from config (DVB-T 474 MHz, program 0x0880)
# and served as a channel that ffprobe on the host reads through the port;
# udev's rules (capbox's /dev/dvb/by-path link); a clean stop → no reset;
# SIGSTOP capbox → the VM resets within the watchdog timeout.
# Boot 2: login prompt again, capbox up and armed, the reset's cause in
# /status; `poweroff` ends QEMU.
#
# The host stamps nothing line by line: it polls the serial log (0.1 s) and
# takes the time it first sees a pattern; reset = GRUB's banner after the
# SIGSTOP mark (as the watchdog rig, hw-tests/run-watchdog-vm.sh, tells a
# reset by the serial log).
#
# Exit: 0 all checks passed, 1 checks failed, 2 the rig could not be built
# or booted. Prints `appliance-vm: P passed, F failed` and the bars
# (`APPLIANCE figures`).
#
# Environment: CAPBOX_HW_CACHE (as the other rigs); CAPBOX_HW_TIMEOUT
# (seconds for the whole VM session, default 600); CAPBOX_IMAGE (boot this
# disk image instead of building one; its image.env beside it is read when
# present).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
session_timeout=${CAPBOX_HW_TIMEOUT:-600}
wd_timeout=10 # the watchdog timeout of the rig's second config

stamp() { echo "run-appliance-vm: $*"; }
die() { echo "run-appliance-vm: FAILED: $*" >&2; exit 2; }
rig_install qemu-system-x86 curl ffmpeg python3 bc
stamp() { printf 'run-appliance-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }

# ---- 1. the image ----
if [ -n "${CAPBOX_IMAGE:-}" ]; then
    disk=$CAPBOX_IMAGE
    envf=$(dirname "$disk")/image.env
else
    CAPBOX_HW_CACHE=$cache bash "$repo/images/build-test-image.sh" || die "images/build-test-image.sh failed"
    disk=$cache/appliance/disk.img
    envf=$cache/appliance/image.env
fi
[ -f "$disk" ] || die "$disk missing"
vidtv=0 capbox_bytes=0 rootfs_used_kib=0 musl_build_s=0 image_total_s=0 rootfs_top=
# shellcheck disable=SC1090
[ -f "$envf" ] && . "$envf"
[ -z "$vidtv" ] && vidtv=0

run=$(mktemp -d "$cache/appliance-run.XXXXXX")
qpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
    jobs -p | xargs -r kill 2>/dev/null
    rm -rf "$run"
}
trap cleanup EXIT

passes=0
failures=0
check() { # check NAME OK(0|1) DETAIL
    if [ "$2" = 1 ]; then
        passes=$((passes + 1)); echo "PASS $1: $3"
    else
        failures=$((failures + 1)); echo "FAIL $1: $3"
    fi
}

# ---- 2. QEMU ----
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
ser=$run/ser
mkfifo "$ser.in" "$ser.out"
raw=$cache/appliance-vm.log # the serial log, kept for a post-mortem
: >"$raw"
stamp "booting $disk under QEMU (tcg, i6300esb, port $port -> 8080)"
Q0=$EPOCHREALTIME
# -snapshot: the disk's writes (the data partition) last for this QEMU,
# across the watchdog reset, and never reach the image file.
timeout "$session_timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 512 \
    -display none -monitor none -nodefaults -snapshot \
    -drive "file=$disk,format=raw,if=virtio" \
    -device i6300esb -watchdog-action reset \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8080" -device virtio-net-pci,netdev=n0 \
    -chardev "pipe,id=ser0,path=$ser" -serial chardev:ser0 &
qpid=$!
exec 7<>"$ser.in"
cat "$ser.out" >>"$raw" &

# The first served byte: the default config's slate channel, polled from
# the host from QEMU's start.
(
    while :; do
        t=$EPOCHREALTIME
        st=$(curl -s -o "$run/fb.ts" --max-time 2 -w '%{time_starttransfer}' "$base/stream/test-slate" 2>/dev/null || true)
        if [ -s "$run/fb.ts" ]; then
            echo "$(echo "$t + $st - $Q0" | bc -l)" >"$run/first_byte"
            break
        fi
        sleep 0.25
    done
) &

size() { stat -c %s "$raw"; }
# wait_for ERE SECONDS [FROM]: the serial log after byte FROM (default 0)
# matches; sets found_at (epoch). 1 on timeout or when QEMU ended.
wait_for() {
    local re=$1 t=$2 from=${3:-0} end
    end=$(echo "$EPOCHREALTIME + $t" | bc)
    while :; do
        if tail -c +"$((from + 1))" "$raw" | tr -d '\r' | grep -a -q -E "$re"; then
            found_at=$EPOCHREALTIME
            return 0
        fi
        [ "$(echo "$EPOCHREALTIME > $end" | bc)" = 1 ] && return 1
        kill -0 "$qpid" 2>/dev/null || return 1
        sleep 0.1
    done
}
send() { printf '%s\r' "$1" >&7; }
# sh_run CMD [SECONDS]: runs CMD in the serial console's shell; sets out
# (its output, CRs dropped) and rc. 1 when the shell never answered.
nrun=0
sh_run() {
    local from t=${2:-30}
    nrun=$((nrun + 1))
    from=$(size)
    send "$1; echo \"@@R$nrun \$?@@\""
    if ! wait_for "@@R$nrun [0-9]+@@" "$t" "$from"; then
        out="(no answer within ${t}s)"; rc=255
        return 1
    fi
    out=$(tail -c +"$((from + 1))" "$raw" | tr -d '\r' | sed -n "1,/@@R$nrun [0-9]*@@/p" | grep -v "@@R$nrun" || true)
    rc=$(tail -c +"$((from + 1))" "$raw" | tr -d '\r' | grep -a -o "@@R$nrun [0-9]*@@" | head -1 | tr -dc '0-9 ' | cut -d' ' -f2)
    return 0
}
# login FROM: waits for the login prompt after byte FROM, logs in as root,
# then makes the shell plain for sh_run (no echo, no prompt: busybox's line
# editor reads a plain line when the tty does not echo) and quiets the
# kernel's console messages.
login() {
    local from=$1
    wait_for 'capbox login:' 180 "$from" || return 1
    login_at=$found_at
    send root
    wait_for 'capbox:[^ ]*# ' 30 "$from" || return 1
    sh_run "stty -echo; PS1=; PS2=; dmesg -n 1" 10
}
status_json() { curl -s --max-time 5 "$base/status"; }
json() { # json PYTHON-EXPR: evaluates EXPR on /status as `s`, prints it
    status_json | python3 -c "import json, sys
try:
    s = json.load(sys.stdin)
    print($1)
except Exception as e:
    print('(no /status: %s)' % e)" 2>/dev/null
}
wait_armed() { # SECONDS: /status answers with the watchdog armed
    local end
    end=$(echo "$EPOCHREALTIME + $1" | bc)
    while [ "$(echo "$EPOCHREALTIME < $end" | bc)" = 1 ]; do
        [ "$(json "s['supervisor']['watchdog']['armed']")" = True ] && return 0
        sleep 0.5
    done
    return 1
}

# ---- 3. boot 1 ----
# From here a failed step is a FAIL line, not the end of the rig.
set +e
if login 0; then
    check "boot 1: login prompt on ttyS0" 1 "after $(printf %.1f "$(echo "$login_at - $Q0" | bc)") s"
else
    check "boot 1: login prompt on ttyS0" 0 "no 'capbox login:' (log: $raw)"
    echo "appliance-vm: $passes passed, $failures failed"
    exit 2
fi
grep -a -q 'Starting capbox: OK (pid' "$raw" && started=1 || started=0
sh_run 'p=$(cat /run/capbox.pid); k=$(cat /run/capbox-keeper.pid); echo "capbox $p $(cat /proc/$p/comm) parent $(sed -n "s/^PPid:[[:space:]]*//p" /proc/$p/status) keeper $k"; /etc/init.d/S60capbox status'
pid_line=$(echo "$out" | grep '^capbox [0-9]' | head -1)
read -r _ cpid comm _ ppid _ kpid <<<"$pid_line" || true
check "capbox started from the init script" \
    "$([ "$started" = 1 ] && [ "$comm" = capbox ] && [ -n "$ppid" ] && [ "$ppid" = "$kpid" ] && echo 1 || echo 0)" \
    "console: $(grep -a -o 'Starting capbox: [^,]*' "$raw" | head -1); pid $cpid ($comm), parent $ppid = S60capbox's keeper $kpid"
sh_run 'grep -c "^watchdog = \"/dev/watchdog\"" /etc/capbox/capbox.toml; readlink /etc/capbox'
check "first boot: default config on the data partition" \
    "$(grep -a -q 'first boot: installed the default config' "$raw" && echo "$out" | grep -qx 1 && echo "$out" | grep -qx /data/capbox && echo 1 || echo 0)" \
    "/etc/capbox -> $(echo "$out" | tail -1), [supervisor] watchdog = \"/dev/watchdog\" ($(echo "$out" | head -1) line)"
wd_line=$(grep -a -o 'watchdog: /dev/watchdog: .*' "$raw" | head -1 | tr -d '\r')
check "watchdog driver loaded at boot" "$(echo "$wd_line" | grep -q i6300 && echo 1 || echo 0)" "${wd_line:-no S15watchdog line}"
if wait_armed 60; then
    check "/status through the forwarded port" 1 "$base/status answers"
    check "watchdog armed by capbox" 1 "supervisor.watchdog: armed, device $(json "s['supervisor']['watchdog']['device']"), timeout $(json "s['supervisor']['watchdog']['timeout_s']") s"
else
    check "/status through the forwarded port" "$([ -n "$(status_json)" ] && echo 1 || echo 0)" "$base/status"
    check "watchdog armed by capbox" 0 "armed: $(json "s['supervisor']['watchdog']")"
    sh_run 'netstat -ltn; wget -q -O- http://127.0.0.1:8080/status | head -c 300; echo; logread | grep capbox | tail -8' 20
    echo "$out" | sed 's/^/  guest| /'
fi
for _ in $(seq 1 40); do [ -s "$run/first_byte" ] && break; sleep 0.5; done
first_byte=$(cat "$run/first_byte" 2>/dev/null || true)
fb_words="no byte from /stream/test-slate"
[ -n "$first_byte" ] && fb_words="$(printf %.1f "$first_byte") s from the start of QEMU to the first byte of /stream/test-slate"
check "boot to the first served byte" "$([ -n "$first_byte" ] && echo 1 || echo 0)" "$fb_words"
sh_run 'logread | grep -c " capbox: "; logread | grep " capbox: .*listening on" | tail -1'
check "capbox's log in syslog (logread)" "$([ "$(echo "$out" | head -1)" -gt 0 ] 2>/dev/null && echo 1 || echo 0)" \
    "$(echo "$out" | head -1) lines tagged capbox, e.g. '$(echo "$out" | tail -1 | cut -c1-110)'"

# The keeper: a crashed capbox is started again (back-off 1 s).
sh_run 'kill -KILL $(cat /run/capbox.pid); sleep 4; cat /run/capbox.pid; logread | grep "starting it again" | tail -1'
newpid=$(echo "$out" | head -1)
check "the keeper restarts a killed capbox" \
    "$([ -n "$newpid" ] && [ "$newpid" != "$cpid" ] && echo "$out" | grep -q 'status 137' && echo 1 || echo 0)" \
    "pid $cpid -> $newpid; $(echo "$out" | tail -1 | sed 's/^.*capbox-init: //')"

# ---- vidtv: tuned from config, served, read by ffprobe ----
if [ "$vidtv" = 1 ]; then
    sh_run 'echo dvb_vidtv_bridge >/data/capbox/modules && /etc/init.d/S05modules start && udevadm settle; ls /dev/dvb/adapter0; ls /dev/dvb/by-path 2>&1'
    check "vidtv loaded from /data/capbox/modules" "$(echo "$out" | grep -q frontend0 && echo 1 || echo 0)" "$(echo "$out" | grep -m1 'modules:')"
    check "udev rules from udev/ applied" "$(echo "$out" | grep -q -- '-frontend0' && echo 1 || echo 0)" \
        "/dev/dvb/by-path: $(echo "$out" | grep -- '-frontend0' | head -1)"
    cfg="[server]
listen = \"0.0.0.0:8080\"

[supervisor]
watchdog = \"/dev/watchdog\"
watchdog_timeout_s = $wd_timeout
stall_after_s = 5

[[adapter]]
name = \"ter1\"
device = \"adapter0\"

[[channel]]
name = \"beethoven\"
[[channel.source]]
adapter = \"ter1\"
tune = \"dvbt 474000000 8MHz\"
program = 0x0880

[[channel]]
name = \"test-slate\"
[[channel.source]]
file = \"/usr/share/capbox/slate.ts\""
    send "cat >/etc/capbox/capbox.toml <<'CAPBOX_EOF'"
    while IFS= read -r l; do send "$l"; done <<<"$cfg"
    send "CAPBOX_EOF"
    sh_run 'capbox check-config /etc/capbox/capbox.toml && /etc/init.d/S60capbox restart' 60
    check "config written on the console, capbox restarted" "$([ "$rc" = 0 ] && echo 1 || echo 0)" "$(echo "$out" | tail -1)"
    wait_armed 60 || true
    probe=$(timeout 60 ffprobe -v error -show_programs -show_streams -of json "$base/stream/beethoven" 2>&1 || true)
    svc=$(echo "$probe" | python3 -c 'import json, sys
try:
    j = json.load(sys.stdin)
    st = [s.get("codec_name", "?") for s in j.get("streams", [])]
    pr = [(p.get("program_num"), p.get("tags", {}).get("service_name")) for p in j.get("programs", [])]
    print("programs %s streams %s" % (pr, st))
except Exception as e:
    print("not JSON: %s" % e)' 2>/dev/null)
    check "vidtv tuned from config, served, read by ffprobe on the host" \
        "$(echo "$svc" | grep -q 's302m' && echo "$svc" | grep -q -e '2176' -e 'Beethoven' && echo 1 || echo 0)" \
        "$base/stream/beethoven: $svc"
else
    echo "SKIP vidtv: the image has no vidtv modules (run hw-tests/run-vm.sh once to build them): the DVB path was NOT tested in the appliance"
fi

# ---- syslog's remote target (/data/capbox/syslog.conf) ----
# The guest's 10.0.2.2 is the host's loopback under QEMU's user networking.
uport=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 60 python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(4096) + b"\n")' "$uport" "$run/syslog.rx" &
nonce=rig-$RANDOM$RANDOM
sh_run "echo REMOTE=10.0.2.2:$uport >/data/capbox/syslog.conf && /etc/init.d/S01syslogd restart && logger -t capbox-rig 'remote syslog check $nonce'" 20
for _ in $(seq 1 20); do grep -a -q "$nonce" "$run/syslog.rx" 2>/dev/null && break; sleep 0.25; done
check "syslog to the remote target of /data/capbox/syslog.conf" "$(grep -a -q "$nonce" "$run/syslog.rx" 2>/dev/null && echo 1 || echo 0)" \
    "UDP 10.0.2.2:$uport got: $(grep -a -m1 "$nonce" "$run/syslog.rx" 2>/dev/null | tr -d '\r' | cut -c1-90)"
sh_run "rm /data/capbox/syslog.conf" 10

# ---- clean stop: no reset ----
timeout_now=$(json "s['supervisor']['watchdog']['timeout_s']")
[[ $timeout_now =~ ^[0-9]+$ ]] || timeout_now=20
sh_run '/etc/init.d/S60capbox stop' 40
stop_line=$(echo "$out" | grep 'Stopping capbox' | head -1)
from=$(size)
sleep $((timeout_now + 3))
sh_run 'echo alive' 10 || true
if [ "$rc" = 0 ] && ! tail -c +"$((from + 1))" "$raw" | grep -a -q 'GNU GRUB'; then
    check "clean stop: no reset" "$(echo "$stop_line" | grep -q 'OK' && echo 1 || echo 0)" \
        "'$stop_line', the shell still answers $((timeout_now + 3)) s later (watchdog timeout $timeout_now s)"
else
    check "clean stop: no reset" 0 "the VM reset or stopped answering after '$stop_line'"
fi
sh_run '/etc/init.d/S60capbox start' 20
wait_armed 60 && rearmed=1 || rearmed=0
check "capbox started again, armed" "$rearmed" "$(echo "$out" | grep 'Starting capbox' | head -1)"

# ---- SIGSTOP: the watchdog resets the VM ----
from=$(size)
send 'kill -STOP $(cat /run/capbox.pid); echo "@@STOP""PED@@"'
if wait_for '@@STOPPED@@' 10 "$from"; then
    stop_at=$found_at
    if wait_for 'GNU GRUB' $((timeout_now * 3 + 30)) "$from"; then
        reset_s=$(printf %.1f "$(echo "$found_at - $stop_at" | bc)")
        bar=$((timeout_now + 5))
        check "SIGSTOP capbox: the VM resets" "$(echo "$reset_s <= $bar" | bc)" "GRUB again ${reset_s} s after SIGSTOP (watchdog timeout $timeout_now s, bar $bar s)"
    else
        reset_s=
        check "SIGSTOP capbox: the VM resets" 0 "no reset within $((timeout_now * 3 + 30)) s"
    fi
else
    reset_s=
    check "SIGSTOP capbox: the VM resets" 0 "the shell did not run the kill"
fi


# ---- boot 2 ----
grub_at=${found_at:-0}
if [ -n "$reset_s" ] && login "$from"; then
    check "boot 2: login prompt on ttyS0" 1 "$(printf %.1f "$(echo "$login_at - $grub_at" | bc)") s after GRUB"
    if wait_armed 90; then
        check "boot 2: capbox up and armed" 1 "/status answers, watchdog armed"
    else
        check "boot 2: capbox up and armed" 0 "$(json "s['supervisor']['watchdog']")"
    fi
    cause=$(json "s['supervisor']['resets']['last_cause']")
    check "boot 2: the reset's cause in /status" "$([ -n "$cause" ] && [ "$cause" != None ] && [[ $cause != "(no /status"* ]] && echo 1 || echo 0)" \
        "supervisor.resets.last_cause: $cause"
    from=$(size)
    send 'poweroff'
    for _ in $(seq 1 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$qpid" 2>/dev/null; then
        check "poweroff ends the VM" 0 "QEMU still runs 30 s after poweroff"
    else
        wait "$qpid" && qrc=0 || qrc=$?
        qpid=
        check "poweroff ends the VM" "$(tail -c +"$((from + 1))" "$raw" | grep -a -q 'Stopping capbox: OK' && [ "$qrc" = 0 ] && echo 1 || echo 0)" \
            "capbox stopped cleanly ($(tail -c +"$((from + 1))" "$raw" | grep -a -o -m1 'Stopping capbox: [A-Z]*')), QEMU exited $qrc"
    fi
else
    check "boot 2: login prompt on ttyS0" 0 "no second boot (log: $raw)"
fi
B2=$EPOCHREALTIME
T1=$(date +%s.%N)

echo "appliance-vm: $passes passed, $failures failed"
boot_min=$(echo "($B2 - $Q0) / 60" | bc -l)
echo "APPLIANCE figures ($(date -u +%Y-%m-%d), QEMU $(qemu-system-x86_64 --version | head -1 | grep -o '[0-9][0-9.]*' | head -1) TCG, kernel ${kver:-?}, $(nproc) host cores):"
echo "| what | figure | bar |"
echo "|---|---|---|"
printf '| capbox musl release build (cargo, as run) | %.2f min | counted apart |\n' "$(echo "$musl_build_s / 60" | bc -l)"
printf '| test image build without the musl build | %.2f min | |\n' "$(echo "($image_total_s - $musl_build_s) / 60" | bc -l)"
printf '| two boots (normal + watchdog reset) and the checks | %.2f min | |\n' "$boot_min"
printf '| image build + boots, musl build apart | %.2f min | < 5 min |\n' "$(echo "($image_total_s - $musl_build_s) / 60 + $boot_min" | bc -l)"
printf '| root filesystem used (one slot, ext4) | %.1f MiB | <= 64 MiB |\n' "$(echo "$rootfs_used_kib / 1024" | bc -l)"
printf '| capbox static binary, stripped | %.2f MiB (%d bytes) | <= 4 MiB |\n' "$(echo "$capbox_bytes / 1048576" | bc -l)" "$capbox_bytes"
printf '| boot to the first served byte (TCG) | %s s | |\n' "${first_byte:+$(printf %.1f "$first_byte")}"
printf '| SIGSTOP to reset (GRUB) | %s s | timeout + 5 s |\n' "${reset_s:--}"
echo "run-appliance-vm: largest in the root filesystem: $rootfs_top"
echo "run-appliance-vm: serial log $raw"
echo "run-appliance-vm: total $(echo "$T1 - $T0" | bc) s"
[ "$failures" = 0 ] || exit 1
