#!/usr/bin/env python3
"""Boolean circuits for the DVB-CSA stream cipher's seven 5->2-bit S-boxes,
for src/ca/csa/sbox.rs (the bitsliced engine).

Reads STREAM_SBOX from src/ca/csa/tables.rs and prints the Rust functions
s1..s7 to stdout. Method: every 4-input Boolean function gets a smallest
formula over and / or / xor / andnot (a & !b) / not, by exhaustive search
by size (numpy, a few seconds). Each S-box output bit is split on one input
x into two 4-input functions f0 (x = 0) and f1 (x = 1) and built as
f0 ^ x&(f0^f1), f1 ^ !x&(f0^f1) or (f0 & !x) | (x & f1); the split input
and the forms are chosen to minimise the gates of both outputs together,
sub-formulas computing the same function shared.

    python3 scripts/csa-sbox-circuits.py > /tmp/sbox.rs   (needs numpy)
"""
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
M = 0xFFFF
INF = 255


def smallest_formulas():
    """cost[f] and how[f] = (op, a, b) for every 16-bit truth table f."""
    cost = np.full(65536, INF, dtype=np.uint8)
    how = {}
    level0 = []
    for v in range(4):
        t = sum(1 << i for i in range(16) if (i >> v) & 1)
        cost[t] = 0
        how[t] = ("var", v, None)
        level0.append(t)
    levels = [np.array(level0, dtype=np.int64)]
    ops = [
        ("and", lambda a, b: a & b),
        ("or", lambda a, b: a | b),
        ("xor", lambda a, b: a ^ b),
        ("andnot", lambda a, b: a & (~b & M)),
    ]
    c = 0
    while not (cost < INF).all():
        c += 1
        new = {}
        for f in levels[c - 1]:
            h = (~int(f)) & M
            if cost[h] > c and h not in new:
                new[h] = ("not", int(f), None)
        for i in range(c):
            j = c - 1 - i
            if j < i:
                continue
            A, B = levels[i], levels[j]
            for name, fn in ops:
                pairs = [(A, B)] if name != "andnot" or i == j else [(A, B), (B, A)]
                for X, Y in pairs:
                    H = fn(X[:, None], Y[None, :]).ravel()
                    idx = np.nonzero(cost[H] > c)[0]
                    if len(idx) == 0:
                        continue
                    uniq, first = np.unique(H[idx], return_index=True)
                    for h, k in zip(uniq.tolist(), idx[first].tolist()):
                        if h not in new:
                            new[h] = (name, int(X[k // len(Y)]), int(Y[k % len(Y)]))
        for h, v in new.items():
            if cost[h] > c:
                cost[h] = c
                how[h] = v
        levels.append(np.array([h for h in new if cost[h] == c], dtype=np.int64))
    return how


def stream_sboxes():
    src = open(os.path.join(HERE, "..", "src", "ca", "csa", "tables.rs")).read()
    block = src[src.index("pub const STREAM_SBOX"):]
    rows = re.findall(r"\[([0-9, ]+)\]", block)[:7]
    boxes = [[int(v) for v in r.replace(" ", "").split(",") if v] for r in rows]
    assert all(len(b) == 32 for b in boxes)
    return boxes


def main():
    how = smallest_formulas()
    extra = {"A": 2, "B": 3, "C": 2, "K": 0}

    def nodes(f, acc):
        op, a, b = how[f]
        if op == "var" or f in acc:
            return
        acc.add(f)
        nodes(a, acc)
        if b is not None:
            nodes(b, acc)

    for k, box in enumerate(stream_sboxes()):
        best = None
        for e in range(5):
            others = [v for v in range(5) if v != e]

            def table(bit, xe):
                t = 0
                for i in range(16):
                    idx = xe << e
                    for j, v in enumerate(others):
                        idx |= ((i >> j) & 1) << v
                    if (box[idx] >> bit) & 1:
                        t |= 1 << i
                return t

            outs = []
            for bit in (1, 0):
                f0, f1 = table(bit, 0), table(bit, 1)
                g = f0 ^ f1
                outs.append([("K", (f0,))] if g == 0 else
                            [("A", (f0, g)), ("B", (f0, f1)), ("C", (f1, g))])
            for fa in outs[0]:
                for fb in outs[1]:
                    acc = set()
                    for f in fa[1] + fb[1]:
                        nodes(f, acc)
                    total = len(acc) + extra[fa[0]] + extra[fb[0]]
                    if best is None or total < best[0]:
                        best = (total, e, others, fa, fb)
        total, e, others, fa, fb = best
        lines, names = [], {}

        def emit(f):
            op, a, b = how[f]
            if op == "var":
                return "x%d" % others[a]
            if f in names:
                return names[f]
            ea = emit(a)
            eb = emit(b) if b is not None else None
            n = "t%d" % (len(lines) + 1)
            expr = f"{ea}.not()" if op == "not" else f"{ea}.{op}({eb})"
            lines.append(f"    let {n} = {expr};")
            names[f] = n
            return n

        xe = "x%d" % e
        res = []
        for kind, fs in (fa, fb):
            if kind == "K":
                res.append(emit(fs[0]))
                continue
            a, b = emit(fs[0]), emit(fs[1])
            n = "t%d" % (len(lines) + 1)
            if kind == "A":
                lines.append(f"    let {n} = {a}.xor({xe}.and({b}));")
            elif kind == "C":
                lines.append(f"    let {n} = {a}.xor({b}.andnot({xe}));")
            else:
                lines.append(f"    let {n} = {a}.andnot({xe}).or({xe}.and({b}));")
            res.append(n)
        print(f"/// S-box {k + 1}: inputs x4 (most significant) … x0; returns (bit 1, bit 0).")
        print(f"/// {total} gates.")
        print("#[inline(always)]")
        print(f"pub fn s{k + 1}<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {{")
        print("\n".join(lines))
        print(f"    ({res[0]}, {res[1]})")
        print("}\n")


if __name__ == "__main__":
    sys.exit(main())
