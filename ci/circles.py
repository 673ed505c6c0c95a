#!/usr/bin/env python3
"""File-level import circles in a Rust crate: module files that reach each other
through `crate::`/`super::`/`self::` paths (use lines and inline paths). Test
modules (`#[cfg(test)] mod tests {` to the end of file) are ignored.
Usage: circles.py [CRATE_SRC_DIR...]  (default: every src/ of the workspace)
Exits 1 when any circle is found: data flows one way between modules.

How modules are read: `use crate::…`, `super::…`, `self::…` paths (braces
expanded) and inline `crate::a::b` paths, resolved to the longest module
prefix that is a file. A child declared with `mod x;` and re-exported is an
edge from parent to child only."""
import os, re, sys
def modpath(src, f):
    rel = os.path.relpath(f, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"): rel = rel[:-1]
    return tuple(rel)
def scan(src):
    files = {}
    for d, _, fs in os.walk(src):
        for n in fs:
            if n.endswith(".rs"):
                p = os.path.join(d, n); files[modpath(src, p)] = p
    mods = set(files)
    edges = {m: set() for m in mods}
    for m, p in files.items():
        text = open(p).read()
        i = text.find("#[cfg(test)]\nmod tests")
        if i >= 0: text = text[:i]
        text = re.sub(r"//[^\n]*", "", text)
        # expand `use crate::{a, b::c}` roughly: collect crate::x::y paths and brace lists
        paths = []
        for mm in re.finditer(r"\b(crate|super|self)((?:::(?:\w+|\{[^;]*?\}))+)", text):
            root, rest = mm.group(1), mm.group(2)
            base = () if root == "crate" else (m[:-1] if root == "super" else m)
            if root == "super" and os.path.basename(p) not in ("mod.rs", "lib.rs", "main.rs"):
                base = m[:-1]
            elif root == "super":
                base = m[:-1]
            def expand(prefix, s):
                s = s.strip()
                if s.startswith("::"): s = s[2:]
                if s.startswith("{"):
                    depth=0; cur=""; parts=[]
                    for ch in s[1:-1]:
                        if ch=="{": depth+=1
                        if ch=="}": depth-=1
                        if ch=="," and depth==0: parts.append(cur); cur=""
                        else: cur+=ch
                    parts.append(cur)
                    for q in parts:
                        if q.strip(): expand(prefix, q)
                    return
                segs = re.split(r"::", s, maxsplit=1)
                head = segs[0].strip().split(" ")[0]
                if not re.match(r"^\w+$", head): paths.append(prefix); return
                if len(segs) == 1: paths.append(prefix + (head,)); return
                expand(prefix + (head,), "::" + segs[1] if segs[1].startswith("{") else segs[1])
            expand(base, rest)
        for q in paths:
            # longest module prefix
            for k in range(len(q), -1, -1):
                if q[:k] in mods:
                    t = q[:k]
                    if t != m and t != (): edges[m].add(t)
                    break
    return files, edges
def sccs(edges):
    idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
    sys.setrecursionlimit(10000)
    def sc(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in idx: sc(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(comp)
    for v in edges:
        if v not in idx: sc(v)
    return out
dirs = sys.argv[1:]
if not dirs:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    for d, subdirs, _ in os.walk(root):
        subdirs[:] = [x for x in subdirs if x not in ("target", "node_modules", ".git", "fuzz")]
        if os.path.basename(d) == "src":
            dirs.append(os.path.relpath(d))
            subdirs[:] = []
total = 0
for src in sorted(dirs):
    files, edges = scan(src)
    for comp in sccs(edges):
        total += 1
        print(src + ": " + " <-> ".join(sorted(os.path.relpath(files[m], src) for m in comp)))
print(f"{total} circle(s)")
sys.exit(1 if total else 0)
