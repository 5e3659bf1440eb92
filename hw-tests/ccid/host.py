#!/usr/bin/env python3
"""The host side of the CCID rig (hw-tests/run-ccid-vm.sh): runs QEMU,
shows the guest's serial console, and answers its `HOST: ...` requests by
plugging and pulling USB CCID readers and emulated cards over QMP.

Usage: host.py TIMEOUT_S QMP_SOCKET NSSDB -- QEMU_ARGV...
Exit code: QEMU's (isa-debug-exit: 2n+1 for n failed guest checks), 124 on
timeout, 3 when a QMP command the guest asked for failed (the guest then
fails its own check too, this only makes the cause plain).
Python 3 standard library only.
"""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

# The host's own failure (a QMP request failed): even, so it cannot be
# mistaken for QEMU's isa-debug-exit codes ((n << 1) | 1), and not 124.
HOST_FAILED = 100

# Serial numbers of reader 1 and 2: pcscd puts them in the reader name,
# which is how the guest tells the readers apart.
SERIAL = {"r1": os.environ.get("CAPBOX_CCID_R1_SERIAL", "CAPBOXR1"), "r2": "CAPBOXR2"}


def say(msg):
    print(f"host: {msg}", flush=True)


class Qmp:
    def __init__(self, path, deadline):
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        self.events = []
        self._read(30)  # greeting
        self.cmd("qmp_capabilities")

    def _read(self, timeout):
        """One JSON message; socket.timeout when none within `timeout`."""
        until = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = until - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QMP closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def cmd(self, execute, **args):
        msg = {"execute": execute}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read(30)
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"{execute} {args}: {r['error'].get('desc')}")
            return r.get("return")

    def wait_event(self, name, device, timeout):
        """Wait for event `name` about device id `device`."""
        until = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and e.get("data", {}).get("device") == device:
                    self.events.remove(e)
                    return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            try:
                self.events.append(self._read(left))
            except (socket.timeout, TimeoutError):
                return False


def act(qmp, what, nssdb):
    """Do one guest request; raises on failure."""
    verb, _, dev = what.partition(" ")
    if verb == "plug":
        qmp.cmd("device_add", driver="usb-ccid", id=dev, bus="xhci.0", serial=SERIAL[dev])
    elif verb == "card":
        # QEMU's emulated card (libcacard) with three certificates from an
        # NSS db made by certutil; it sits on the reader's CCID bus.
        qmp.cmd(
            "device_add",
            driver="ccid-card-emulated",
            id=f"{dev}-card",
            bus=f"{dev}.0",
            backend="certificates",
            db=f"sql:{nssdb}",
            cert1="cert1",
            cert2="cert2",
            cert3="cert3",
        )
    elif verb in ("unplug", "uncard"):
        # A USB device goes at once (a surprise removal to the guest); a
        # reader's card goes first (QEMU unrealizes the card child, the
        # reader sends NotifySlotChange, then leaves the bus). The id is
        # free again after DEVICE_DELETED.
        what = dev if verb == "unplug" else f"{dev}-card"
        qmp.cmd("device_del", id=what)
        if not qmp.wait_event("DEVICE_DELETED", what, 30):
            raise RuntimeError(f"no DEVICE_DELETED for {what}")
    else:
        raise RuntimeError(f"unknown request {what!r}")


def main():
    timeout = float(sys.argv[1])
    qmp_path = sys.argv[2]
    nssdb = sys.argv[3]
    assert sys.argv[4] == "--"
    argv = sys.argv[5:]
    t0 = time.monotonic()
    deadline = t0 + timeout
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    lines = queue.Queue()

    def pump():
        for raw in qemu.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    qmp = None
    failed = False
    try:
        qmp = Qmp(qmp_path, deadline)
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if time.monotonic() > deadline:
                say(f"TIMEOUT after {timeout:.0f}s")
                qemu.kill()
                qemu.wait()
                return 124
            if line is None:
                break
            print(line, flush=True)
            if line.startswith("HOST: "):
                what = line[len("HOST: "):].strip()
                if what == "done":
                    continue
                try:
                    act(qmp, what, nssdb)
                    say(f"[{time.monotonic() - t0:6.1f}s] {what}: done")
                except Exception as e:  # noqa: BLE001 - reported, the guest's check fails too
                    failed = True
                    say(f"FAILED {what}: {e}")
    except Exception as e:  # noqa: BLE001
        say(f"FAILED: {e}")
        qemu.kill()
        qemu.wait()
        return HOST_FAILED
    rc = qemu.wait()
    if failed and rc == 1:
        return HOST_FAILED
    return rc


if __name__ == "__main__":
    sys.exit(main())
