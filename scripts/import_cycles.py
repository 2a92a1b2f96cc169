#!/usr/bin/env python3
"""The import graph of a Rust source folder, one node per file, and its circles: groups of files that import each
other, directly or round a loop (strongly connected components of more than one file). Exits 1 when there is one.

An edge is a `crate::…`, `super::…` or `self::…` path (also inside `use a::{b, c}` groups) that names a module
file; comments, unit-test modules (from `#[cfg(test)]` on) and `super::` inside an inline `mod x { … }` (which
names the file itself) are not counted. Declaring a child (`mod x;`) is not an import.

    python3 scripts/import_cycles.py [src]
"""

import os
import re
import sys


def module_files(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts == ["lib"] or parts == ["main"]:
                    parts = [] if parts == ["lib"] else ["main"]
                files[tuple(parts)] = path
    return files


def imports(module, path, files):
    src = re.sub(r"//[^\n]*", "", open(path, encoding="utf-8").read())
    cut = src.find("#[cfg(test)]")
    if cut >= 0:
        src = src[:cut]
    inline = [m.start() for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))? )?mod \w+ \{", src)]

    def in_inline_module(pos):
        line_start = src.rfind("\n", 0, pos) + 1
        return any(i < pos for i in inline) and src[line_start:pos].startswith(" ")

    def file_of(parts):
        for n in range(len(parts), -1, -1):
            if tuple(parts[:n]) in files:
                return tuple(parts[:n])
        return None

    def base(head, rest):
        if head == "crate":
            return [], rest
        if head == "self":
            return list(module), rest
        parent = list(module[:-1])
        while rest and rest[0] == "super":
            parent, rest = parent[:-1], rest[1:]
        return parent, rest

    found = set()
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)", src):
        if m.group(1) == "super" and in_inline_module(m.start()):
            continue
        start, rest = base(m.group(1), m.group(2).strip(":").split("::"))
        found.add(file_of(start + rest))
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)::\{([^}]*)\}", src):
        if m.group(1) == "super" and in_inline_module(m.start()):
            continue
        start, rest = base(m.group(1), [x for x in m.group(2).split("::") if x])
        for item in m.group(3).split(","):
            item = item.strip().split("::")[0].split(" ")[0]
            if item and item != "self":
                found.add(file_of(start + rest + [item]))
    found.discard(None)
    found.discard(module)
    found.discard(())
    return found


def circles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(100000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    files = module_files(root)
    graph = {m: imports(m, p, files) for m, p in files.items()}
    found = circles(graph)
    name = lambda m: "/".join(m) or "lib"
    for group in found:
        print(f"import circle of {len(group)} files:")
        for m in group:
            print(f"  {name(m)} -> {', '.join(sorted(name(t) for t in graph[m] if t in group))}")
    print(f"{len(files)} files, {sum(map(len, graph.values()))} imports, {len(found)} import circles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
