#!/usr/bin/env bash
# The update rig (issue 16): signed A/B updates on the test image in QEMU
# (TCG), driven over the serial console and HTTP as an operator would.
#
# Setup: a test CA and signing key (openssl, in the run's temporary
# directory: no key in the repository), a second "stranger" CA; the test
# image built with the test CA as its keyring (version ...-a); bundles made
# from its rootfs.ext4 with debugfs edits (no second image build):
#   good    version ...-b, signed by the test CA
#   broken  version ...-x, /usr/bin/capbox replaced by a program that
#           passes `check-config` but exits 1 when it should serve (a
#           deliberately broken build: capbox cannot start)
#   refused version ...-r, /usr/bin/capbox replaced by a program that
#           plays a newer capbox refusing [update] trial_timeout_s (its
#           `check-config` names the file, line and key, exit 1)
#   wdreset version ...-w, /usr/bin/capbox replaced by a program that
#           arms the i6300esb watchdog (heartbeat 15 s) and never feeds
#           it: every boot of the slot ends in a watchdog reset, well
#           before the trial guard's 60 s
#   bad     version ...-b, signed by the stranger CA
#   wrongbox version ...-b, signed by the test CA, compatible
#           capbox-aarch64 (a bundle for another kind of box)
#   cut     the good bundle's first half (a download cut short)
#   good2   version ...-c (for the power cut)
# served to the guest over HTTP by the host (10.0.2.2 under QEMU's user
# networking): `capbox update http://...` is what an operator types.
# One persistent disk for the whole run (copied from the image), its
# writes throttled to 16 MB/s (a slow flash disk: RAUC's write of a slot
# then lasts ~4 s, long enough to cut it in the middle).
#
# Cases, in one chain of boots:
#   1. slot A boots; the config written once ([update] mark_good_after_s =
#      10, trial_timeout_s = 60) and its checksum taken;
#   2. bad signature: refused with a clear message, nothing written, no
#      reboot, /status last outcome "failed";
#   2a. wrong box, cut bundle: the same checks as the bad signature, in the
#      same boot (no reboot): refused, saying the bundle is for another
#      kind of box (naming both compatibles) / is incomplete or damaged;
#   2b. refused config: installed into B, the new slot's capbox (run from
#      the slot mounted read-only) refuses the config: its words on the
#      console with line and key, no reboot, B marked bad, A still first,
#      /status outcome "config_refused" naming the key;
#   3. good: installed into B, the box reboots into B, capbox marks it
#      good after 10 s of health; /status: slot B, version -b, outcome good;
#   4. broken (from B into A): the box boots A, capbox never starts, the
#      trial guard marks A bad after 60 s and reboots: back on B by
#      itself, /status outcome "rolled_back" and why (the guard saw
#      capbox exit: "capbox does not stay up");
#   3b. watchdog resets (from B into A): every boot of A is reset by the
#      watchdog ~15 s after capbox's start, before the guard's 60 s: no
#      guard reason; GRUB boots A three times (three trial boots on the
#      console, grubenv A_TRY=3), then B by itself; /status outcome
#      "rolled_back", saying A's 3 boot tries ran out with no reason
#      recorded;
#   5. power cut: QEMU killed while `rauc install` writes good2 into A;
#      QEMU started again on the same disk: slot B boots, /status outcome
#      "interrupted".
# After every case the data partition's capbox.toml is unchanged.
#
# Exit: 0 all passed, 1 checks failed, 2 the rig could not be built or
# booted. Prints `update-vm: P passed, F failed` and `UPDATE figures`.
#
# Environment: CAPBOX_HW_CACHE; CAPBOX_HW_TIMEOUT (seconds per QEMU run,
# default 900, 600 more with wdreset); CAPBOX_UPDATE_CASES (default
# "badsig wrongbox cut refused good wdreset broken powercut":
# the cases to run, in that order; CI runs them all when they fit).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
cases=${CAPBOX_UPDATE_CASES:-badsig wrongbox cut refused good wdreset broken powercut}
case " $cases " in *" wdreset "*) session_timeout=${CAPBOX_HW_TIMEOUT:-1500} ;; *) session_timeout=${CAPBOX_HW_TIMEOUT:-900} ;; esac

stamp() { echo "run-update-vm: $*"; }
die() { echo "run-update-vm: FAILED: $*" >&2; exit 2; }
rig_install qemu-system-x86 curl python3 bc openssl rauc squashfs-tools e2fsprogs
stamp() { printf 'run-update-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }

run=$(mktemp -d "$cache/update-run.XXXXXX")
qpid=
hpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
    [ -n "$hpid" ] && kill "$hpid" 2>/dev/null
    rm -rf "$run"
}
trap cleanup EXIT

# ---- 1. keys, image, bundles ----
stamp "test CA and signing key (openssl)"
mkca() { # DIR NAME: a CA and a signing certificate it issued
    mkdir -p "$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$2 CA" \
        -keyout "$1/ca.key.pem" -out "$1/ca.cert.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2 signing" \
        -keyout "$1/sign.key.pem" -out "$1/sign.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' >"$1/ext"
    openssl x509 -req -in "$1/sign.csr" -CA "$1/ca.cert.pem" -CAkey "$1/ca.key.pem" -CAcreateserial \
        -days 30 -extfile "$1/ext" -out "$1/sign.cert.pem" 2>/dev/null
}
mkca "$run/ca" "capbox update test" || die "openssl could not make the test CA"
mkca "$run/stranger" "stranger" || die "openssl could not make the stranger CA"
base=1.0.0-$(date +%s)
img=$cache/update-image
CAPBOX_HW_CACHE=$cache CAPBOX_IMAGE_OUT=$img CAPBOX_IMAGE_VERSION=$base-a CAPBOX_RAUC_KEYRING=$run/ca/ca.cert.pem \
    bash "$repo/images/build-test-image.sh" >"$run/build.log" 2>&1 || { tail -20 "$run/build.log"; die "images/build-test-image.sh failed"; }
grep -E 'root filesystem used|minutes' "$run/build.log" | sed 's/^build-test-image/run-update-vm: image/'
# A rootfs variant: ROOTFS VERSION [CAPBOX-REPLACEMENT]
variant() {
    cp "$img/rootfs.ext4" "$1"
    printf 'NAME=capbox\nVERSION=%s\n' "$2" >"$run/release"
    debugfs -w -R "rm /etc/capbox-release" "$1" >/dev/null 2>&1
    debugfs -w -R "write $run/release /etc/capbox-release" "$1" >/dev/null 2>&1
    if [ -n "${3:-}" ]; then
        debugfs -w -R "rm /usr/bin/capbox" "$1" >/dev/null 2>&1
        debugfs -w -R "write $3 /usr/bin/capbox" "$1" >/dev/null 2>&1
        debugfs -w -R "sif /usr/bin/capbox mode 0100755" "$1" >/dev/null 2>&1
    fi
    debugfs -R "cat /etc/capbox-release" "$1" 2>/dev/null | grep -qx "VERSION=$2" || die "debugfs could not edit $1"
}
printf '#!/bin/sh\n[ "$1" = check-config ] && exit 0\necho "capbox: deliberately broken build (update rig)" >&2\nexit 1\n' >"$run/broken-capbox"
cat >"$run/refusing-capbox" <<'SH'
#!/bin/sh
# A newer capbox that no longer knows [update] trial_timeout_s (update rig).
if [ "$1" = check-config ]; then
    n=$(grep -n '^trial_timeout_s' "$2" | head -1 | cut -d: -f1)
    if [ -n "$n" ]; then
        echo "$2:$n: update.trial_timeout_s: unknown key; expected one of mark_good_after_s, state_file" >&2
        echo "capbox: 1 error(s) in $2" >&2
        exit 1
    fi
    exit 0
fi
exit 1
SH
# A build that hangs the box: the watchdog armed, never fed. Opening
# /dev/watchdog arms it; the fd is held and nothing is ever written, so
# the keeper of S60capbox sees a capbox that runs (a restart would feed
# it). The driver reloaded with a 15 s heartbeat (default 30): the reset
# comes ~15 s after S60capbox, far ahead of the guard's 60 s from S20.
cat >"$run/wdreset-capbox" <<'SH'
#!/bin/sh
[ "$1" = check-config ] && exit 0
modprobe -r i6300esb 2>/dev/null && modprobe i6300esb heartbeat=15 2>/dev/null
i=0
while [ ! -c /dev/watchdog ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "capbox: update rig: watchdog armed ($(cat /sys/class/watchdog/watchdog0/timeout 2>/dev/null) s), never fed, at $(cut -d' ' -f1 /proc/uptime) s" >/dev/console
exec 3>/dev/watchdog
exec sleep 100000
SH
mkdir -p "$run/www"
variant "$run/rootfs-b.ext4" "$base-b"
variant "$run/rootfs-x.ext4" "$base-x" "$run/broken-capbox"
variant "$run/rootfs-c.ext4" "$base-c"
case " $cases " in *" refused "*) variant "$run/rootfs-r.ext4" "$base-r" "$run/refusing-capbox" ;; esac
case " $cases " in *" wdreset "*) variant "$run/rootfs-w.ext4" "$base-w" "$run/wdreset-capbox" ;; esac
B0=$(date +%s.%N)
bash "$repo/images/make-bundle.sh" "$run/rootfs-b.ext4" "$base-b" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/good.raucb" "$run/ca/ca.cert.pem" || die "make-bundle good"
bundle_s=$(echo "$(date +%s.%N) - $B0" | bc)
bash "$repo/images/make-bundle.sh" "$run/rootfs-x.ext4" "$base-x" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/broken.raucb" >/dev/null || die "make-bundle broken"
bash "$repo/images/make-bundle.sh" "$run/rootfs-c.ext4" "$base-c" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/good2.raucb" >/dev/null || die "make-bundle good2"
bash "$repo/images/make-bundle.sh" "$run/rootfs-b.ext4" "$base-b" "$run/stranger/sign.cert.pem" "$run/stranger/sign.key.pem" "$run/www/bad.raucb" >/dev/null || die "make-bundle bad"
if [ -f "$run/rootfs-r.ext4" ]; then
    bash "$repo/images/make-bundle.sh" "$run/rootfs-r.ext4" "$base-r" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/refused.raucb" >/dev/null || die "make-bundle refused"
fi
if [ -f "$run/rootfs-w.ext4" ]; then
    bash "$repo/images/make-bundle.sh" "$run/rootfs-w.ext4" "$base-w" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/wdreset.raucb" >/dev/null || die "make-bundle wdreset"
fi
case " $cases " in *" wrongbox "*)
    stamp "bundle for another box (compatible capbox-aarch64)"
    CAPBOX_BUNDLE_COMPATIBLE=capbox-aarch64 bash "$repo/images/make-bundle.sh" "$run/rootfs-b.ext4" "$base-b" "$run/ca/sign.cert.pem" "$run/ca/sign.key.pem" "$run/www/wrongbox.raucb" >/dev/null || die "make-bundle wrongbox" ;;
esac
bundle_bytes=$(stat -c %s "$run/www/good.raucb")
head -c $((bundle_bytes / 2)) "$run/www/good.raucb" >"$run/www/cut.raucb"
stamp "bundles made"
rauc info --keyring="$run/stranger/ca.cert.pem" "$run/www/bad.raucb" >/dev/null 2>&1 || die "the stranger's bundle does not verify against the stranger's CA"
wport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$run/www" && exec python3 -m http.server "$wport" --bind 127.0.0.1 >"$run/http.log" 2>&1) &
hpid=$!
url=http://10.0.2.2:$wport
cp --sparse=always "$img/disk.img" "$run/disk.img"

passes=0
failures=0
check() { # check NAME OK(0|1) DETAIL
    if [ "$2" = 1 ]; then
        passes=$((passes + 1)); echo "PASS $1: $3"
    else
        failures=$((failures + 1)); echo "FAIL $1: $3"
    fi
}

# ---- 2. QEMU (started again after the power cut) ----
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hbase=http://127.0.0.1:$port
raw=$cache/update-vm.log
: >"$raw"
nq=0
qemu_start() {
    nq=$((nq + 1))
    local ser=$run/ser$nq
    mkfifo "$ser.in" "$ser.out"
    timeout "$session_timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 512 \
        -display none -monitor none -nodefaults -pidfile "$run/qemu$nq.pid" \
        -drive "file=$run/disk.img,format=raw,if=virtio,throttling.bps-write=16777216" \
        -device i6300esb -watchdog-action reset \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8080" -device virtio-net-pci,netdev=n0 \
        -chardev "pipe,id=ser0,path=$ser" -serial chardev:ser0 &
    qpid=$!
    exec 7<>"$ser.in"
    cat "$ser.out" >>"$raw" &
}
size() { stat -c %s "$raw"; }
wait_for() { # ERE SECONDS [FROM]
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
nrun=0
sh_run() { # CMD [SECONDS]: sets out, rc
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
login() { # FROM
    local from=$1
    wait_for 'capbox login:' 240 "$from" || return 1
    send root
    wait_for 'capbox:[^ ]*# ' 30 "$from" || return 1
    sh_run "stty -echo; PS1=; PS2=; dmesg -n 1" 10
}
json() { # EXPR on /status as s
    curl -s --max-time 5 "$hbase/status" | python3 -c "import json, sys
try:
    s = json.load(sys.stdin)
    print($1)
except Exception as e:
    print('(no /status: %s)' % e)" 2>/dev/null
}
wait_json() { # EXPR WANT SECONDS: /status's EXPR prints WANT
    local end
    end=$(echo "$EPOCHREALTIME + $3" | bc)
    while [ "$(echo "$EPOCHREALTIME < $end" | bc)" = 1 ]; do
        got=$(json "$1")
        [ "$got" = "$2" ] && return 0
        sleep 1
    done
    return 1
}
cfg_sum() { sh_run 'md5sum /data/capbox/capbox.toml | cut -d" " -f1' 10; echo "$out" | grep -E '^[0-9a-f]{32}$' | head -1; }
grubenv() { sh_run 'grub-editenv /boot/grub/grubenv list | tr "\n" " "; echo' 10; echo "$out" | grep "ORDER=" | tail -1; }
guest_dump() { # on a failed case: what the guest says
    sh_run 'logread | grep -E "update|rauc|capbox-init" | tail -15; cat /data/capbox/capbox-update.state' 20
    echo "$out" | sed 's/^/  guest| /'
}

set +e
Q0=$EPOCHREALTIME
stamp "booting $run/disk.img (version $base-a) under QEMU (tcg); bundles on $url"
qemu_start
if ! login 0; then
    check "boot: slot A, login prompt" 0 "no login (log: $raw)"
    echo "update-vm: $passes passed, $failures failed"
    exit 2
fi
sh_run 'cat /proc/cmdline; cat /etc/capbox-release'
check "boot: slot A, login prompt" "$(echo "$out" | grep -q 'rauc.slot=A' && echo "$out" | grep -q "VERSION=$base-a" && echo 1 || echo 0)" \
    "$(echo "$out" | grep -o 'rauc.slot=[AB]') $(echo "$out" | grep VERSION=)"
# The config, written once: the default channels plus [update].
sh_run 'grep -q "^\[update\]" /data/capbox/capbox.toml || printf "\n[update]\nmark_good_after_s = 10\ntrial_timeout_s = 60\n" >>/data/capbox/capbox.toml; capbox check-config /data/capbox/capbox.toml && /etc/init.d/S60capbox restart' 60
sum0=$(cfg_sum)
sh_run 'rauc status 2>&1 | head -30' 30
check "RAUC: rauc service answers, slot A booted" "$(echo "$out" | grep -q 'Booted from: rootfs.0 (A)' && echo 1 || echo 0)" \
    "$(echo "$out" | grep -E 'Booted from|Compatible' | tr '\n' ' ')"
echo "$out" | sed 's/^/  guest| /'
wait_json "s['update']['slot']" A 60
check "/status update: slot A, version -a" "$([ "$(json "s['update']['version']")" = "$base-a" ] && echo 1 || echo 0)" \
    "$(json "s['update']")"
metrics=$(curl -s --max-time 5 "$hbase/metrics")
check "metrics: capbox_build_info carries version and slot" \
    "$(echo "$metrics" | grep -q "^capbox_build_info{version=\"$base-a\",capbox_version=\"[^\"]*\",slot=\"A\"} 1" && echo 1 || echo 0)" "$(echo "$metrics" | grep '^capbox_build_info')"
stamp "grubenv: $(grubenv)"

for c in $cases; do
    stamp "case $c"
    case $c in
    badsig)
        sh_run "capbox update $url/bad.raucb 2>&1" 240
        msg=$(echo "$out" | grep -a 'FAILED' | head -1)
        check "bad signature: refused with a clear message" \
            "$([ "$rc" = 1 ] && echo "$msg" | grep -q 'not signed by a key this box trusts' && echo 1 || echo 0)" "exit $rc: $msg"
        [ "$rc" = 1 ] || echo "$out" | tail -15 | sed 's/^/  guest| /'
        wait_json "s['update']['last']['outcome']" failed 5 || true
        check "bad signature: nothing installed, /status says failed, still slot A" \
            "$([ "$(json "s['update']['last']['outcome']")" = failed ] && [ "$(json "s['update']['slot']")" = A ] && grubenv | grep -q 'ORDER=A B' && echo 1 || echo 0)" \
            "outcome $(json "s['update']['last']['outcome']"), grubenv $(grubenv)"
        check "bad signature: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        ;;
    wrongbox | cut)
        # Refused before anything is written, like the bad signature.
        if [ "$c" = wrongbox ]; then
            what="wrong box"
            want='for another kind of box.*capbox-x86_64.*capbox-aarch64'
        else
            what="cut bundle"
            want='incomplete or damaged'
        fi
        sh_run "capbox update $url/$c.raucb 2>&1" 240
        msg=$(echo "$out" | grep -a 'FAILED' | head -1)
        check "$what: refused with a clear message" \
            "$([ "$rc" = 1 ] && echo "$msg" | grep -qE "$want" && echo 1 || echo 0)" "exit $rc: $msg"
        [ "$rc" = 1 ] || echo "$out" | tail -15 | sed 's/^/  guest| /'
        echo "$out" | grep -aiE 'rauc|error|fail|invalid|mismatch' | head -8 | sed 's/^/  guest| /'
        wait_json "s['update']['last']['outcome']" failed 5 || true
        m=$(json "s['update']['last']['message']")
        check "$what: nothing installed, /status says failed with that message, still slot A" \
            "$([ "$(json "s['update']['last']['outcome']")" = failed ] && echo "$m" | grep -qE "$want" && [ "$(json "s['update']['slot']")" = A ] && grubenv | grep -q 'ORDER=A B' && echo 1 || echo 0)" \
            "outcome $(json "s['update']['last']['outcome']"): $m; grubenv $(grubenv)"
        check "$what: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        ;;
    refused)
        sh_run "capbox update $url/refused.raucb 2>&1" 300
        msg=$(echo "$out" | grep -a 'FAILED' | head -1)
        words=$(echo "$out" | grep -a 'new capbox:' | head -1)
        check "refused config: the new version's words, no reboot" \
            "$([ "$rc" = 1 ] && echo "$words" | grep -q 'capbox.toml:[0-9]*: update.trial_timeout_s: unknown key' && echo "$msg" | grep -q 'slot B marked bad, slot A stays' && echo 1 || echo 0)" \
            "exit $rc: $words | $msg"
        [ "$rc" = 1 ] || echo "$out" | tail -15 | sed 's/^/  guest| /'
        wait_json "s['update']['last']['outcome']" config_refused 5 || true
        ge=$(grubenv)
        check "refused config: /status config_refused naming the key, still slot A first, B bad" \
            "$([ "$(json "s['update']['last']['outcome']")" = config_refused ] && json "s['update']['last']['message']" | grep -q 'update.trial_timeout_s' && [ "$(json "s['update']['slot']")" = A ] && echo "$ge" | grep -q 'ORDER=A B' && echo "$ge" | grep -q 'B_OK=0' && echo 1 || echo 0)" \
            "outcome $(json "s['update']['last']['outcome']"): $(json "s['update']['last']['message']"); grubenv $ge"
        sh_run 'grep -q " /run/capbox-update/slot " /proc/mounts && echo MOUNTED || echo unmounted' 10
        check "refused config: the slot unmounted, config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo "$out" | grep -q unmounted && echo 1 || echo 0)" "md5 $sum0, $(echo "$out" | grep -o -E 'MOUNTED|unmounted')"
        ;;
    good)
        from=$(size)
        U0=$EPOCHREALTIME
        send "capbox update $url/good.raucb"
        if wait_for 'rebooting into the new slot' 300 "$from"; then
            inst=$(printf %.0f "$(echo "$EPOCHREALTIME - $U0" | bc)")
            check "good bundle: installed, rebooting" 1 "$inst s from the command to the reboot"
        else
            check "good bundle: installed, rebooting" 0 "$(tail -c +"$((from + 1))" "$raw" | tr -d '\r' | grep -a -E 'capbox update|rauc' | tail -8 | tr '\n' '|')"
        fi
        if login "$from"; then
            sh_run 'cat /proc/cmdline; cat /etc/capbox-release'
            check "good bundle: boots slot B, version -b" "$(echo "$out" | grep -q 'rauc.slot=B' && echo "$out" | grep -q "VERSION=$base-b" && echo 1 || echo 0)" \
                "$(echo "$out" | grep -o 'rauc.slot=[AB]') $(echo "$out" | grep VERSION=)"
            if wait_json "s['update']['last']['outcome']" good 120; then
                good_s=$(printf %.0f "$(echo "$EPOCHREALTIME - $U0" | bc)")
                check "good bundle: capbox marked slot B good" "$(grubenv | grep -q 'B_OK=1' && grubenv | grep -q 'B_TRY=0' && echo 1 || echo 0)" \
                    "${good_s} s after the command; $(json "s['update']['last']['message']"); grubenv $(grubenv)"
            else
                check "good bundle: capbox marked slot B good" 0 "$(json "s['update']")"
                guest_dump
            fi
            check "good bundle: /status: slot B, version -b" \
                "$([ "$(json "s['update']['slot']")" = B ] && [ "$(json "s['update']['version']")" = "$base-b" ] && echo 1 || echo 0)" \
                "slot $(json "s['update']['slot']") version $(json "s['update']['version']") other $(json "s['update']['other_slot']")=$(json "s['update']['other_version']")"
            check "good bundle: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        else
            check "good bundle: boots slot B, version -b" 0 "no login after the update (log: $raw)"
            break
        fi
        ;;
    broken)
        from=$(size)
        R0=$EPOCHREALTIME
        send "capbox update $url/broken.raucb"
        wait_for 'rebooting into the new slot' 300 "$from" && m=$(size) || m=$from
        # The broken slot: capbox cannot start; the guard reboots after
        # trial_timeout_s; the old slot's login prompt comes after that.
        if wait_for 'capbox login:' 240 "$m" && wait_for 'not marked good within' 200 "$m"; then
            :
        fi
        tail -c +"$((m + 1))" "$raw" | tr -d '\r' | grep -a -E 'deliberately broken|not marked good|update:' | head -5 | sed 's/^/  serial| /'
        if login "$(size)"; then
            g=$(tail -c +"$((from + 1))" "$raw" | grep -a -o 'GNU GRUB' | wc -l)
            sh_run 'cat /proc/cmdline; cat /etc/capbox-release'
            back=$(printf %.0f "$(echo "$EPOCHREALTIME - $R0" | bc)")
            check "broken bundle: back on slot B by itself" "$(echo "$out" | grep -q 'rauc.slot=B' && echo "$out" | grep -q "VERSION=$base-b" && echo 1 || echo 0)" \
                "$(echo "$out" | grep -o 'rauc.slot=[AB]') $(echo "$out" | grep VERSION=), $back s after the command, $g boots (the broken slot's and the old one's)"
            if wait_json "s['update']['last']['outcome']" rolled_back 90; then
                check "broken bundle: /status says rolled back, and why" "$(json "s['update']['last']['message']" | grep -q 'on slot A: capbox does not stay up: capbox exited with status 1' && echo 1 || echo 0)" "$(json "s['update']['last']['message']")"
            else
                check "broken bundle: /status says rolled back" 0 "$(json "s['update']")"
                guest_dump
            fi
            check "broken bundle: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        else
            check "broken bundle: back on slot B by itself" 0 "no login (log: $raw)"
            break
        fi
        ;;
    wdreset)
        sh_run 'cat /proc/cmdline'
        old=$(echo "$out" | grep -o 'rauc.slot=[AB]' | head -1 | cut -d= -f2)
        [ "$old" = A ] && new=B || new=A
        oldv=$(json "s['update']['version']")
        from=$(size)
        W0=$EPOCHREALTIME
        send "capbox update $url/wdreset.raucb"
        wait_for 'rebooting into the new slot' 300 "$from" && m=$(size) || m=$from
        # Three trial boots of the new slot, each reset by the watchdog;
        # then GRUB's fourth pick is the old slot, whose S20update marks
        # it good (its X_TRY is 1): that line says the old slot is back.
        wait_for "update: slot $old booted: marked good" 1200 "$m"
        seg=$(tail -c +"$((m + 1))" "$raw" | tr -d '\r')
        tries=$(echo "$seg" | grep -a -c "update: trial boot of slot $new")
        armed=$(echo "$seg" | grep -a -c 'update rig: watchdog armed')
        guard=$(echo "$seg" | grep -a -c 'not marked good within')
        g=$(echo "$seg" | grep -a -c 'GNU GRUB')
        echo "$seg" | grep -a -E 'update rig: watchdog armed|update: trial boot|not marked good|i6300esb|watchdog' | head -12 | sed 's/^/  serial| /'
        check "watchdog resets: 3 trial boots of slot $new, each reset by the watchdog before the guard" \
            "$([ "$tries" = 3 ] && [ "$armed" = 3 ] && [ "$guard" = 0 ] && echo 1 || echo 0)" \
            "$tries trial boots, $armed watchdog arms, $guard guard timeouts, $g GRUB starts since the command"
        if login "$(size)"; then
            sh_run 'cat /proc/cmdline; cat /etc/capbox-release'
            wd_back=$(printf %.0f "$(echo "$EPOCHREALTIME - $W0" | bc)")
            ge=$(grubenv)
            check "watchdog resets: GRUB boots slot $old by itself, ${new}_TRY=3" \
                "$(echo "$out" | grep -q "rauc.slot=$old" && echo "$out" | grep -q "VERSION=$oldv" && echo "$ge" | grep -q "${new}_TRY=3" && echo 1 || echo 0)" \
                "$(echo "$out" | grep -o 'rauc.slot=[AB]') $(echo "$out" | grep VERSION=), $wd_back s after the command; grubenv $ge"
            if wait_json "s['update']['last']['outcome']" rolled_back 90; then
                check "watchdog resets: /status says rolled back after the tries ran out" \
                    "$(json "s['update']['last']['message']" | grep -q "slot $new (version $base-w) was not marked good: the box is back on slot $old after slot $new's 3 boot tries ran out" && echo 1 || echo 0)" \
                    "$(json "s['update']['last']['message']")"
            else
                check "watchdog resets: /status says rolled back" 0 "$(json "s['update']")"
                guest_dump
            fi
            check "watchdog resets: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        else
            check "watchdog resets: GRUB boots slot $old by itself" 0 "no login (log: $raw)"
            break
        fi
        ;;
    powercut)
        from=$(size)
        send "capbox update $url/good2.raucb"
        # Killed as soon as RAUC says it writes the slot (it marked the
        # slot bad just before): the worst moment.
        if wait_for 'Copying image to rootfs' 240 "$from"; then
            # QEMU itself (not timeout(1) around it): the power cut.
            kill -KILL "$(cat "$run/qemu$nq.pid")"; wait "$qpid" 2>/dev/null; qpid=
            check "power cut: QEMU killed during rauc install" 1 "last words before the cut: '$(tail -c +"$((from + 1))" "$raw" | tr -d '\r' | grep -a 'rauc:' | tail -1)'"
        else
            check "power cut: QEMU killed during rauc install" 0 "no 'Copying image to rootfs'"
            break
        fi
        m=$(size)
        qemu_start
        if login "$m"; then
            sh_run 'cat /proc/cmdline; cat /etc/capbox-release'
            check "power cut: the old slot B still boots" "$(echo "$out" | grep -q 'rauc.slot=B' && echo "$out" | grep -q "VERSION=$base-b" && echo 1 || echo 0)" \
                "$(echo "$out" | grep -o 'rauc.slot=[AB]') $(echo "$out" | grep VERSION=); grubenv $(grubenv)"
            if wait_json "s['update']['last']['outcome']" interrupted 90; then
                check "power cut: /status says interrupted" 1 "$(json "s['update']['last']['message']")"
            else
                check "power cut: /status says interrupted" 0 "$(json "s['update']")"
            fi
            check "power cut: config unchanged" "$([ "$(cfg_sum)" = "$sum0" ] && echo 1 || echo 0)" "md5 $sum0"
        else
            check "power cut: the old slot B still boots" 0 "no login (log: $raw)"
            break
        fi
        ;;
    esac
done
stamp "cases done"
send 'poweroff'
for _ in $(seq 1 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
Q1=$EPOCHREALTIME
T1=$(date +%s.%N)
echo "update-vm: $passes passed, $failures failed"
echo "UPDATE figures ($(date -u +%Y-%m-%d), QEMU $(qemu-system-x86_64 --version | head -1 | grep -o '[0-9][0-9.]*' | head -1) TCG, $(nproc) host cores, cases: $cases):"
echo "| what | figure |"
echo "|---|---|"
printf '| bundle (plain, squashfs of the 64 MiB ext4 slot) | %.1f MiB (%d bytes) |\n' "$(echo "$bundle_bytes / 1048576" | bc -l)" "$bundle_bytes"
printf '| making one bundle (rauc bundle, host) | %.1f s |\n' "$bundle_s"
printf '| good bundle: command to marked good (TCG) | %s s |\n' "${good_s:--}"
printf '| broken bundle: command to back on the old slot (TCG) | %s s |\n' "${back:--}"
printf '| watchdog-reset bundle: command to back on the old slot after 3 tries (TCG) | %s s |\n' "${wd_back:--}"
printf '| QEMU part (all boots and cases) | %.2f min |\n' "$(echo "($Q1 - $Q0) / 60" | bc -l)"
printf '| whole update test (image, bundles, QEMU) | %.2f min |\n' "$(echo "($T1 - $T0) / 60" | bc -l)"
echo "run-update-vm: serial log $raw"
[ "$failures" = 0 ] || exit 1
