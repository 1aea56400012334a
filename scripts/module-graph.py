#!/usr/bin/env python3
"""The host library's module graph from its `crate::` and `super::` paths (tests left out), and
its cycles (strongly connected parts), failing when there is one (CI runs it).
`python3 scripts/module-graph.py [host/src] [--edges]`."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'host/src'
def modname(path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split('/')
    if parts[-1] in ('mod', 'lib'): parts = parts[:-1]
    return '::'.join(parts) or 'lib'
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f); mods[modname(p)] = p
def resolve(name, path):
    # longest module prefix of path
    segs = path.split('::')
    for i in range(len(segs), 0, -1):
        cand = '::'.join(segs[:i])
        if cand in mods: return cand
    return None
edges = {m: set() for m in mods}
for m, p in mods.items():
    src = open(p).read()
    src = src.split('#[cfg(test)]\nmod tests')[0]
    src = re.sub(r'//[^\n]*', '', src)
    # expand `crate::a::{b, c::{d}}` roughly: take crate::x::y paths and brace groups
    for mt in re.finditer(r'crate::([A-Za-z0-9_:]+)(::\{([^;]*?)\})?', src):
        base = mt.group(1).rstrip(':')
        targets = [base]
        if mt.group(3):
            for item in re.split(r',', mt.group(3)):
                item = item.strip().strip('{} ')
                if item and item != 'self': targets.append(base + '::' + item.split('::')[0])
        for t in targets:
            r = resolve(None, t)
            if r and r != m and not m.startswith(r + '::') and not r.startswith(m + '::'):
                edges[m].add(r)
    # super:: paths
    parent = '::'.join(m.split('::')[:-1]) if not p.endswith('mod.rs') else '::'.join(m.split('::')[:-1])
    for mt in re.finditer(r'\bsuper::([A-Za-z0-9_]+)', src):
        t = (parent + '::' if parent else '') + mt.group(1)
        r = resolve(None, t)
        if r and r != m and not m.startswith(r + '::') and not r.startswith(m + '::'):
            edges[m].add(r)
# Tarjan
index = {}; low = {}; stack = []; on = set(); sccs = []; counter = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(sorted(comp))
for v in sorted(edges):
    if v not in index: strong(v)
if '--edges' in sys.argv:
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m]))}")
cyc = [c for c in sccs if len(c) > 1]
print(f"{len(mods)} modules, {sum(len(e) for e in edges.values())} edges, {len(cyc)} cycles:")
for c in sorted(cyc, key=len):
    # show the back-and-forth edges inside the cycle
    inner = [f"{a}->{b}" for a in c for b in sorted(edges[a]) if b in c]
    print(f"  {{{', '.join(c)}}}: {'; '.join(inner)}")
sys.exit(1 if cyc else 0)
