#!/usr/bin/env python3
"""Declared target dependencies (Package.swift) must equal the modules each target imports.

Prints one line per mismatch and a summary "deps: P passed, F failed" (P, F counted per target).
Standard modules (Foundation, XCTest, Glibc, Dispatch, ...) are not declared and not checked.
"""
import os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM = {"Foundation", "XCTest", "Glibc", "Dispatch", "Darwin", "Swift", "_Concurrency"}
PRODUCTS = {"ArgumentParser": "ArgumentParser", "Yams": "Yams"}  # product name -> module name

text = open(os.path.join(ROOT, "Package.swift")).read()
def calls(src):
    """(kind, name, arguments) of every .target/.testTarget/... call, parentheses balanced."""
    for m in re.finditer(r'\.(target|testTarget|executableTarget|systemLibrary)\(', src):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            i += 1
        args = src[m.end():i - 1]
        yield m.group(1), re.search(r'name:\s*"([^"]+)"', args).group(1), args

targets = {}
for kind, name, rest in calls(text):
    deps = set()
    d = re.search(r'dependencies:\s*\[(.*?)\]', rest, re.S)
    if d:
        for s in re.findall(r'\.product\(name:\s*"([^"]+)"', d.group(1)):
            deps.add(PRODUCTS.get(s, s))
        body = re.sub(r'\.product\([^)]*\)', '', d.group(1))
        deps |= set(re.findall(r'"([^"]+)"', body))
    targets[name] = (kind, deps)

passed = failed = 0
for name, (kind, declared) in sorted(targets.items()):
    if kind == "systemLibrary":
        continue
    folder = os.path.join(ROOT, "Tests" if kind == "testTarget" else "Sources", name)
    if not any(f.endswith(".swift") for _, _, fs in os.walk(folder) for f in fs):
        continue  # a C target reaches its system libraries through #include, not import
    imports = set()
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".swift") or f.endswith(".c") or f.endswith(".h"):
                src = open(os.path.join(dirpath, f), encoding="utf-8", errors="replace").read()
                imports |= set(re.findall(r'^\s*(?:@testable\s+)?import\s+(\w+)', src, re.M))
    imports -= SYSTEM
    imports.discard(name)
    if kind == "testTarget" and name == "CLITests":
        imports.discard("elip")  # the executable is a dependency so that it is built; it is run, not imported
    declared_modules = {d for d in declared if d != "elip"}
    missing = imports - declared_modules
    unused = declared_modules - imports
    if missing or unused:
        failed += 1
        if missing: print(f"FAIL {name}: imports {sorted(missing)} without declaring them")
        if unused: print(f"FAIL {name}: declares {sorted(unused)} without importing them")
    else:
        passed += 1
print(f"deps: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
