#!/usr/bin/env python3
"""Write a small seed corpus for every fuzz target into fuzz/corpus/<target>/.

Packets, sections and PES headers come from samples/mux.ts (ffmpeg-made);
the tables mux.ts lacks (CAT, NIT, EIT, TDT, TOT) are built here from EN 300
468 layouts with a CRC-32/MPEG-2, so they are not capbox's own emitter output.
Usage: fuzz-seeds.py ROOT
"""
import os
import sys

ROOT = sys.argv[1]
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
P = 188


def crc32_mpeg2(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def long_section(tid, ext, body, version=1, sn=0, last=0, reserved=0x30):
    length = 5 + len(body) + 4
    head = bytes([tid, 0x80 | reserved | (length >> 8), length & 0xFF,
                  ext >> 8, ext & 0xFF, 0xC0 | (version << 1) | 1, sn, last])
    s = head + body
    return s + crc32_mpeg2(s).to_bytes(4, "big")


def desc(tag, data):
    return bytes([tag, len(data)]) + data


def seeds(target, items):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%03d" % i), "wb") as f:
            f.write(data)


mux = open(os.path.join(ROOT, "samples", "mux.ts"), "rb").read()
pkts = [mux[i:i + P] for i in range(0, len(mux) - P + 1, P)]


def pid(p):
    return (p[1] & 0x1F) << 8 | p[2]


def payload(p):
    afc = p[3] >> 4 & 3
    if afc == 1:
        return p[4:]
    if afc == 3:
        return p[5 + p[4]:]
    return b""


# Sections that start and end in one PUSI packet (all of mux.ts's PSI).
sections = {}
for p in pkts:
    if p[1] & 0x40 and pid(p) in (0, 0x11, 0x1000, 0x1001, 0x1002):
        pl = payload(p)
        ptr = pl[0]
        s = pl[1 + ptr:]
        ln = 3 + ((s[1] & 0x0F) << 8 | s[2])
        if ln <= len(s):
            sections.setdefault(s[0], set()).add(bytes(s[:ln]))
sec = {k: sorted(v) for k, v in sections.items()}

# Synthetic SI tables (EN 300 468 layouts).
ca = desc(0x09, bytes([0x18, 0x00, 0xE1, 0x50]))
cat = long_section(0x01, 0xFFFF, ca + desc(0x09, bytes([0x05, 0x00, 0xE0, 0x20, 0xAA])))
netname = desc(0x40, b"capbox net")
svclist = desc(0x41, bytes([0, 1, 1, 0, 2, 0x19, 0, 3, 2]))
sat = desc(0x43, bytes([0x01, 0x17, 0x25, 0x00, 0x01, 0x92, 0xA1, 0x02, 0x75, 0x00, 0x03]))
cable = desc(0x44, bytes([0x03, 0x46, 0x00, 0x00, 0xFF, 0xF0, 0x05, 0x00, 0x69, 0x00, 0x03]))
terr = desc(0x5A, bytes([0x02, 0xFA, 0xF0, 0x80, 0x1F, 0x81, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF]))
tsloop = b""
for i, d in enumerate((sat + svclist, cable, terr)):
    tsloop += bytes([0x0C, 0x0B + i, 0x20, 0xFA, 0xF0 | len(d) >> 8, len(d) & 0xFF]) + d
nbody = bytes([0xF0, len(netname)]) + netname + bytes([0xF0 | len(tsloop) >> 8, len(tsloop) & 0xFF]) + tsloop
nit = long_section(0x40, 0x3001, nbody, reserved=0x70)
short_ev = desc(0x4D, b"eng" + bytes([9]) + b"Demo News" + bytes([6]) + b"\x05Caf\xe9!")
ext_ev = desc(0x4E, bytes([0x00]) + b"fra" + bytes([8, 3]) + b"Dir" + bytes([3]) + b"Bob" + bytes([6]) + b"\x15\xc3\xa9t\xc3\xa9")
content = desc(0x54, bytes([0x12, 0x00, 0x40, 0x01]))
rating = desc(0x55, b"DEU" + bytes([0x09]))
component = desc(0x50, bytes([0x05, 0x0B, 0x01]) + b"deu" + b"HD")
ev_desc = short_ev + ext_ev + content + rating + component
utc = bytes([0xE9, 0x5B, 0x12, 0x45, 0x00])
event = bytes([0x00, 0x01]) + utc + bytes([0x01, 0x30, 0x00, 0x80 | len(ev_desc) >> 8, len(ev_desc) & 0xFF]) + ev_desc
eit = long_section(0x4E, 1, bytes([0x0C, 0x0B, 0x20, 0xFA, 0x00, 0x4E]) + event + event, reserved=0x70)
eit_sched = long_section(0x50, 2, bytes([0x0C, 0x0B, 0x20, 0xFA, 0x08, 0x51]) + event, reserved=0x70)
tdt = bytes([0x70, 0x70, 0x05]) + utc
lto = desc(0x58, b"DEU" + bytes([0x02, 0x01, 0x00]) + utc + bytes([0x02, 0x00]))
tot_body = utc + bytes([0xF0, len(lto)]) + lto
tot_nocrc = bytes([0x73, 0x70, len(tot_body) + 4]) + tot_body
tot = tot_nocrc + crc32_mpeg2(tot_nocrc).to_bytes(4, "big")

sec[0x01] = [cat]
sec[0x40] = [nit]
sec[0x4E] = [eit, eit_sched]
sec[0x70] = [tdt]
sec[0x73] = [tot]

seeds("pat", sec.get(0x00, []))
seeds("pmt", sec.get(0x02, []))
seeds("sdt", sec.get(0x42, []))
seeds("cat", sec[0x01])
seeds("nit", sec[0x40])
seeds("eit", sec[0x4E])
seeds("tdt", sec[0x70])
seeds("tot", sec[0x73])

all_sections = [s for v in sec.values() for s in v]


def pad4(s):
    return s + b"\xFF" * (-len(s) % 4)


seeds("collector", [b"".join(bytes([len(pad4(s)) // 4]) + pad4(s) for s in all_sections if len(pad4(s)) < 1024)])

# Descriptor loops: PMT ES_info / program_info, SDT service loops, synthetic.
loops = [ca, netname + svclist + sat + cable + terr, ev_desc, lto,
         desc(0x0A, b"fra\x00eng\x03"), desc(0x59, b"deu\x10\x00\x01\x00\x02"),
         desc(0x56, b"deu\x09\x88"), desc(0x52, b"\x01")]
for s in sec.get(0x02, []):
    b = s[8:-4]
    pil = (b[2] & 0x0F) << 8 | b[3]
    loops.append(b[4:4 + pil])
    rest = b[4 + pil:]
    while len(rest) >= 5:
        eil = (rest[3] & 0x0F) << 8 | rest[4]
        loops.append(rest[5:5 + eil])
        rest = rest[5 + eil:]
for s in sec.get(0x42, []):
    rest = s[11:-4]
    while len(rest) >= 5:
        dl = (rest[3] & 0x0F) << 8 | rest[4]
        loops.append(rest[5:5 + dl])
        rest = rest[5 + dl:]
seeds("descriptors", [l for l in loops if l])

seeds("dvb_text", [b"Demo News", b"\x05Caf\xe9", b"\x15\xc3\xa9t\xc3\xa9 \xe2\x82\xac",
                   b"\x11\x00A\x04\x10\xe0\x8a", b"\xc2e\xc8u\xa4 \x8a", b"\x10\x00\x07\xc1",
                   b"\x1f\x01\xaa", b"\x13AB\xb0\xa1", b"Demo\x86Sport\x87"])

# Packets: PSI, PCR-carrying, PES starts, plain payload, stuffing.
picked = []
seen = set()
for p in pkts:
    key = (pid(p), p[1] & 0x40, p[3] >> 4 & 3)
    if key not in seen:
        seen.add(key)
        picked.append(p)
seeds("ts_packet", picked[:64])

pes = []
seen = set()
for p in pkts:
    if p[1] & 0x40 and pid(p) not in (0, 0x11, 0x1000, 0x1001, 0x1002, 0x1FFF):
        if pid(p) not in seen:
            seen.add(pid(p))
            pes.append(bytes(payload(p)))
seeds("pes", pes)

# Section assembler: CRC-fix flag off, then the PSI packets in stream order.
psi_pk = [p for p in pkts if pid(p) in (0, 0x11, 0x1000)][:12]
seeds("section_assembler", [b"\x00" + b"".join(psi_pk), b"\x01" + b"".join(psi_pk[:3])])

# Entry points: selector (H.264, video PID 0x101 = 0x100 | 1) + its packets.
vid = [p for p in pkts if pid(p) == 0x101]
starts = [i for i, p in enumerate(vid) if p[1] & 0x40]
es = []
for i in starts[:3]:
    es.append(bytes([0x01 | 1 << 2]) + b"".join(vid[i:i + 12]))
seeds("es_entry_point", es)

seeds("resync", [b"\x00" + b"\x00\x47garbage" + b"".join(pkts[:6]),
                 b"\x05" + b"".join(pkts[:4])[100:]])

# Remux: the start of the mux (PAT, PMTs, SDT, PCR, first PES of each PID).
head = pkts[:48]
seeds("remux", [b"\x00" + b"".join(head), b"\x03" + b"".join(head[:24])])

fan = []
for ep in (0, 1):
    body = b"".join(pkts[:3]) + b"\x47\x00"
    n = len(body) << 1 | ep
    fan.append(bytes([n >> 8, n & 0xFF]) + body)
seeds("fanout", [b"".join(fan)])

cfgs = []
for d in ("examples",):
    dd = os.path.join(ROOT, d)
    if os.path.isdir(dd):
        for n in sorted(os.listdir(dd)):
            if n.endswith(".toml"):
                cfgs.append(open(os.path.join(dd, n), "rb").read())
cfgs.append(b'[[channel]]\nname = "news"\n[[channel.source]]\nfile = "mux.ts"\nprogram = 1\nloop = true\n')
seeds("config", cfgs)
seeds("cidr", [b"10.0.0.0/8", b"::1/128", b"192.168.1.5/24", b"::ffff:10.0.0.1/104", b"0.0.0.0/0"])

# EPG (xmltv_in, epg_eit, monitor). The guides are around BASE, 2026-12-06
# 00:00 UTC, the targets' "now" for a header of zeros.
BASE = 1796515200


def xmltv_time(t, off_min=0):
    import time
    tm = time.gmtime(t + off_min * 60)
    sign = "+" if off_min >= 0 else "-"
    return time.strftime("%Y%m%d%H%M%S", tm) + " %s%02d%02d" % (sign, abs(off_min) // 60, abs(off_min) % 60)


def xmltv_doc(progs, channels=("a", "b")):
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE tv SYSTEM "xmltv.dtd">', '<tv>']
    for c in channels:
        out.append('<channel id="%s"><display-name>%s</display-name></channel>' % (c, c.upper()))
    out += progs
    out.append("</tv>")
    return "\n".join(out).encode()


def prog(ch, start, stop, title, extra="", off=60):
    stop_attr = ' stop="%s"' % xmltv_time(stop, off) if stop is not None else ""
    return ('<programme start="%s"%s channel="%s"><title lang="en">%s</title>%s</programme>'
            % (xmltv_time(start, off), stop_attr, ch, title, extra))


day = [prog("a", BASE + h * 3600, BASE + (h + 1) * 3600, "News &amp; Weather %d" % h,
            "<sub-title>Part &#49;</sub-title><desc>Line one\nline &lt;two&gt; &quot;q&quot;</desc>"
            "<category>Sports</category><category lang=\"en\">Movie/Drama</category>"
            "<rating system=\"FSK\"><value>12</value></rating>") for h in range(12)]
hdr = bytes([0, 0, 0x40, 0x03])  # now = BASE, budget 130 KiB, 4 channels, UTC
seeds("xmltv_in", [
    hdr + xmltv_doc(day),
    hdr + xmltv_doc([prog("b", BASE + i * 1800, None, "THE EVENING NEWS") for i in range(6)]),
    bytes([0, 0, 0x02, 0x09]) + xmltv_doc(day[:4] + [prog("b", BASE, BASE + 600, "<![CDATA[A < B]]>"),
                                                      prog("xunknown", BASE, BASE + 60, "x"),
                                                      prog("a", BASE + 1800, BASE + 900, "backwards"),
                                                      prog("a", BASE + 7200, BASE + 9000, "&custom; ent")]),
    bytes([0xFF, 0xB0, 0x10, 0x12]) + xmltv_doc([prog("c", BASE - 2 * 86400 + i * 5400, BASE - 2 * 86400 + (i + 1) * 5400,
                                                      "Caf\u00e9 \u2014 \u65e5\u672c", off=-300).encode().decode()
                                                 for i in range(40)], channels=("c",)),
])


def mjd_utc(t):
    days, secs = divmod(t, 86400)
    mjd = days + 40587
    bcd = lambda v: (v // 10) << 4 | v % 10
    return bytes([mjd >> 8, mjd & 0xFF, bcd(secs // 3600), bcd(secs // 60 % 60), bcd(secs % 60)])


def eit_event(eid, t, dur_min, title, text=b"", lang=b"eng"):
    d = desc(0x4D, lang + bytes([len(title)]) + title + bytes([len(text)]) + text)
    d += desc(0x54, bytes([0x40, 0x00])) + desc(0x55, b"FRA" + bytes([0x09]))
    if text:
        d += desc(0x4E, bytes([0x00]) + lang + bytes([0]) + bytes([len(text)]) + text)
    bcd = lambda v: (v // 10) << 4 | v % 10
    dur = bytes([bcd(dur_min // 60), bcd(dur_min % 60), 0])
    return bytes([eid >> 8, eid & 0xFF]) + mjd_utc(t) + dur + bytes([0x80 | len(d) >> 8, len(d) & 0xFF]) + d


def eit_sec(tid, sid, events, sn=0, last=0, version=1):
    return long_section(tid, sid, bytes([0x0C, 0x0B, 0x20, 0xFA, last, tid]) + b"".join(events),
                        version=version, sn=sn, last=last, reserved=0x70)


def packetize(sec, pid_, cc0=0):
    out, cc, first = [], cc0, True
    data = sec
    while first or data:
        body = (b"\x00" + data) if first else data
        chunk, data = body[:184], body[184:] if not first else body[184:]
        pkt = bytes([0x47, (0x40 if first else 0) | pid_ >> 8, pid_ & 0xFF, 0x10 | cc]) + chunk
        out.append(pkt + b"\xFF" * (188 - len(pkt)))
        cc, first = (cc + 1) % 16, False
    return out


pf = eit_sec(0x4E, 1, [eit_event(1, BASE + 3600, 60, b"Now & <then>", b"\x05Caf\xe9 d\xe9j\xe0"),
                       eit_event(2, BASE + 7200, 30, b"NEXT PROGRAMME TONIGHT")])
sched = eit_sec(0x50, 2, [eit_event(10 + i, BASE + i * 2700, 45, b"Film %d" % i, b"A long text " * 3)
                          for i in range(8)])
sched2 = eit_sec(0x51, 2, [eit_event(30 + i, BASE + 4 * 86400 + i * 3600, 60, b"Day four %d" % i) for i in range(4)])
other = eit_sec(0x4F, 3, [eit_event(5, BASE, 90, b"Other mux")])
rec = lambda s: b"\x00" + len(s).to_bytes(2, "big") + s
pk = packetize(pf, 0x12) + packetize(sched, 0x12, 1)
pkrec = b"".join(bytes([0x01, len(pk[i:i + 8]) - 1]) + b"".join(pk[i:i + 8]) for i in range(0, len(pk), 8))
pkshared = b"".join(bytes([0x12, len(pk[i:i + 8]) - 1]) + b"".join(pk[i:i + 8]) for i in range(0, len(pk), 8))
ehdr = bytes([0, 0, 0x20, 0x00])
seeds("epg_eit", [
    ehdr + rec(pf) + rec(sched) + rec(sched2) + rec(other),
    ehdr + pkrec + b"\x03\x3c" + pkrec,
    bytes([0, 0, 0x02, 0x07]) + pkshared + b"\x02" + pkshared[1:] + b"\x13\x02" + rec(pf),
    ehdr + rec(pf) + b"\x40" + rec(sched)[1:] + b"\x04" + rec(pf),
])

# Monitor: mux.ts's first packets in reads of 8, the clock moving 10 ms a
# read; one with a gap of minutes, one through push_bytes.
mon = b"\x03"
for i in range(0, 96, 8):
    mon += bytes([0x3C | 0x40, 1]) + b"".join(pkts[i:i + 8])
gap = b"\x01" + b"".join(bytes([0x1C | 0x40, 2]) + b"".join(pkts[i:i + 8]) for i in range(0, 48, 8))
gap += bytes([0x1C | 0xA0, 5]) + b"".join(pkts[48:56]) + bytes([0x03, 1, 0x03, 2])
byt = b"\x02" + b"".join(bytes([0x1E | 0x40, 3]) + b"".join(pkts[i:i + 8])[5:] for i in range(0, 64, 8))
seeds("monitor", [mon, gap, byt])

print("seeds written to %s (%d targets)" % (CORPUS, len(os.listdir(CORPUS))))
