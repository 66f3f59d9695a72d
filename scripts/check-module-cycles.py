#!/usr/bin/env python3
"""Reports import cycles between modules, in every crate of the workspace (stdlib only).

    python3 scripts/check-module-cycles.py          # exit 0: no cycle; 1: cycles, listed

For each crate target (the library and binaries of every workspace member, found from the
root Cargo.toml), the module tree is read from the `mod name;` declarations, starting at the
target's root file. Every path in a module's code that starts with `crate::`, `super::` or
`self::` (`use` trees with braces included) is resolved to the deepest module it names, which
gives the module's dependencies.

A cycle is looked for among siblings, at every level of the tree: among the crate's top-level
modules, then among the children of each module, with every deeper module counted as the
child it lies under. A module using its own submodules, or a submodule using its parent,
is not a cycle: the parent and its children are one unit. Code under `#[cfg(test)]` is left
out (a unit test may reach anywhere). Comments and string literals are ignored, except the
paths serde attributes name in strings (`with = "crate::units::duration"`).
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip_code(text):
    """The text without comments, string and char literals, and `#[cfg(test)]` items."""
    # Raw strings, then ordinary strings and byte strings, then char literals, then comments.
    text = re.sub(r'b?r(#*)"(?:.|\n)*?"\1', '""', text)
    text = re.sub(r'b?"(?:\\.|[^"\\])*"', '""', text, flags=re.S)
    text = re.sub(r"b?'(?:\\.|[^'\\\n])'", "' '", text)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*(?:.|\n)*?\*/", "", text)
    return strip_cfg_test(text)


def strip_cfg_test(text):
    """Removes each `#[cfg(test)]` item (up to its `;` or its matching closing brace)."""
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        j = m.end()
        depth = 0
        while j < len(text):
            c = text[j]
            if c == ";" and depth == 0:
                j += 1
                break
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            j += 1
        i = j


MOD_DECL = re.compile(
    r'((?:#\[path\s*=\s*"([^"]+)"\]\s*)?)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;'
)


def module_tree(root_file):
    """{module path (tuple): file} for a crate target whose root file is `root_file`."""
    modules = {(): root_file}
    stack = [((), root_file, True)]
    while stack:
        path, file, is_dir_owner = stack.pop()
        raw = file.read_text(encoding="utf-8")
        # `#[path]` values live in strings: read declarations before stripping literals.
        no_comments = re.sub(r"//[^\n]*", "", raw)
        no_comments = strip_cfg_test(re.sub(r"/\*(?:.|\n)*?\*/", "", no_comments))
        # A root, `mod.rs` file owns its directory; `foo.rs` owns `foo/`.
        base = file.parent if is_dir_owner else file.parent / file.stem
        for m in MOD_DECL.finditer(no_comments):
            explicit, name = m.group(2), m.group(3)
            if explicit:
                child = file.parent / explicit
            elif (base / f"{name}.rs").exists():
                child = base / f"{name}.rs"
            else:
                child = base / name / "mod.rs"
            if not child.exists():
                continue
            child_path = path + (name,)
            modules[child_path] = child
            stack.append((child_path, child, child.name == "mod.rs"))
    return modules


def use_paths(code, start):
    """Paths of the use tree (or plain path) starting at `start` (just after `crate::` etc.)."""

    def tree(i):
        # Returns (list of segment lists, index after the tree).
        segs = []
        while True:
            while i < len(code) and code[i].isspace():
                i += 1
            if i < len(code) and code[i] == "{":
                i += 1
                results = []
                while True:
                    sub, i = tree(i)
                    results.extend(segs + s for s in sub)
                    while i < len(code) and code[i].isspace():
                        i += 1
                    if i < len(code) and code[i] == ",":
                        i += 1
                        while i < len(code) and code[i].isspace():
                            i += 1
                        if i < len(code) and code[i] == "}":
                            return results, i + 1
                        continue
                    if i < len(code) and code[i] == "}":
                        i += 1
                    return results, i
            m = re.compile(r"\w+|\*").match(code, i)
            if not m:
                return [segs], i
            segs.append(m.group(0))
            i = m.end()
            if code.startswith("::", i):
                i += 2
                continue
            return [segs], i

    return tree(start)[0]


REF = re.compile(r"\b(crate|super|self)::")


ATTR_PATH = re.compile(r'\b(?:with|deserialize_with|serialize_with|default)\s*=\s*"((?:\w+::)+\w+)"')


def dependencies(path, file, modules):
    """{module (tuple) that module `path`'s code refers to: the paths naming it}."""
    raw = file.read_text(encoding="utf-8")
    code = strip_code(raw)
    # Paths in serde attributes' strings are code too: append them, one per line.
    code += "\n" + "\n".join(m.group(1) for m in ATTR_PATH.finditer(strip_cfg_test(raw)))
    found = {}
    for m in REF.finditer(code):
        # `super::super::x`, `self::x` and `crate::x` are resolved against `path`.
        kind = m.group(1)
        base = () if kind == "crate" else path[:-1] if kind == "super" else path
        for segs in use_paths(code, m.end()):
            cur = list(base)
            written = "::".join([kind] + segs)
            for s in segs:
                if s == "super":
                    cur = cur[:-1]
                elif s not in ("self", "*"):
                    cur.append(s)
            # The deepest module the path names.
            while tuple(cur) not in modules:
                cur.pop()
            found.setdefault(tuple(cur), set()).add(written)
    found.pop(path, None)
    return found


def sibling_cycles(modules, deps):
    """Cycles among the children of each module; returns [(parent, [cycle of names], edges)]."""
    problems = []
    for parent in sorted(modules):
        children = sorted(p[-1] for p in modules if len(p) == len(parent) + 1 and p[:-1] == parent)
        if len(children) < 2:
            continue
        depth = len(parent)
        graph = {c: {} for c in children}
        for mod, targets in deps.items():
            if len(mod) <= depth or mod[:depth] != parent:
                continue
            src = mod[depth]
            for t, written in targets.items():
                if len(t) <= depth or t[:depth] != parent or t[depth] == src:
                    continue
                edge = ("::".join(mod), "::".join(t), ", ".join(sorted(written)[:3]))
                graph[src].setdefault(t[depth], set()).add(edge)
        for scc in strongly_connected(graph):
            if len(scc) > 1:
                edges = sorted(
                    e for a in scc for b, es in graph[a].items() if b in scc for e in es
                )
                problems.append((parent, sorted(scc), edges))
    return problems


def strongly_connected(graph):
    """Tarjan's algorithm, iteratively."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    scc.append(n)
                    if n == node:
                        break
                result.append(scc)
    return result


def targets():
    """(crate directory, target name, root file) of every workspace member's lib and bins."""
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    members = []
    for pattern in workspace["workspace"]["members"]:
        members.extend(sorted(ROOT.glob(pattern)))
    for member in members:
        manifest = tomllib.loads((member / "Cargo.toml").read_text(encoding="utf-8"))
        name = manifest["package"]["name"]
        roots = []
        lib = manifest.get("lib", {}).get("path", "src/lib.rs")
        if (member / lib).exists():
            roots.append((f"{name} (lib)", member / lib))
        bins = [b["path"] for b in manifest.get("bin", []) if "path" in b]
        if not manifest.get("bin") and (member / "src/main.rs").exists():
            bins.append("src/main.rs")
        bins.extend(str(p.relative_to(member)) for p in sorted((member / "src/bin").glob("*.rs")))
        for b in dict.fromkeys(bins):
            roots.append((f"{name} (bin {Path(b).stem})", member / b))
        yield from ((member, label, root) for label, root in roots)


def main():
    failed = False
    checked = 0
    for member, label, root in targets():
        modules = module_tree(root)
        deps = {p: dependencies(p, f, modules) for p, f in modules.items()}
        checked += len(modules) - 1
        for parent, cycle, edges in sibling_cycles(modules, deps):
            failed = True
            where = "::".join(("crate",) + parent)
            print(f"{label}: cycle among the children of {where}: {' <-> '.join(cycle)}")
            for a, b, written in edges:
                print(f"    {a} -> {b}  ({written})")
    if not failed:
        print(f"module cycles: none ({checked} modules)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
