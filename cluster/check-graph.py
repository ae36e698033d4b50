#!/usr/bin/env python3
"""Checks the package graph against the pipeline's tiers: every dependency of a target must sit
in a strictly lower tier, every target's folder must be Sources/<name> (or Tests/<name>), every
`import` of a project module must be a declared dependency, and cortado-infer must not reach
MPI or the trainer. Reads `swift package describe --type json` (or --describe FILE, which the
tests use to show it failing on a bad graph). Prints one line per violation; exit 1 if any.

    python3 cluster/check-graph.py [--describe FILE] [--root DIR]
"""
import argparse, json, os, re, subprocess, sys

# The tiers (docs/architecture.md): dependencies only point to a lower tier.
TIERS = [
    {"CMPI", "CHDF5", "COpenBLAS", "CSystemZlib", "CKernels", "CortadoCore"},        # 0: C libraries, core
    {"CortadoData", "CortadoModel", "CortadoMPI"},                            # 1: data, model, MPI
    {"CortadoJob"},                                                           # 2: spec and formats
    {"CortadoTrain", "CortadoCompress", "CortadoInfer", "CortadoONNX"},       # 3: the steps
    {"CortadoPipeline", "CortadoRegistry", "CortadoServe"},                # 4: steps together
    {"cortado", "cortado-train", "cortado-infer", "cortado-fuzz"},            # 5: executables
]
# Executables that must not reach these targets, even indirectly.
FORBIDDEN_REACH = {"cortado-infer": {"CMPI", "CortadoMPI", "CortadoTrain", "CortadoJob"},
                   "cortado-fuzz": {"CortadoTrain", "CMPI"}}
TEST_TYPES = {"test"}


def tier_of(name):
    for i, names in enumerate(TIERS):
        if name in names:
            return i
    return None


def reach(targets, start):
    seen, stack = set(), [start]
    while stack:
        for d in targets.get(stack.pop(), {}).get("target_dependencies") or []:
            if d not in seen:
                seen.add(d)
                stack.append(d)
    return seen


def imports(root, path):
    found = set()
    for dirpath, _, files in os.walk(os.path.join(root, path)):
        for f in files:
            if f.endswith(".swift"):
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    for line in fh:
                        m = re.match(r"^\s*(?:@testable\s+)?import\s+(\w+)", line)
                        if m:
                            found.add((m.group(1), os.path.join(dirpath, f)))
    return found


def check(describe, root):
    targets = {t["name"]: t for t in describe["targets"]}
    errors = []
    tested = set()
    for name, t in sorted(targets.items()):
        deps = t.get("target_dependencies") or []
        if t.get("type") in TEST_TYPES or t["path"].startswith("Tests/"):
            tested.add(name)   # a test target or a test-support library
            if not t["path"] == f"Tests/{name}":
                errors.append(f"{name}: folder {t['path']} is not Tests/{name}")
            continue
        tier = tier_of(name)
        if tier is None:
            errors.append(f"{name}: no tier (add it to TIERS in cluster/check-graph.py)")
            continue
        if t["path"] != f"Sources/{name}":
            errors.append(f"{name}: folder {t['path']} is not Sources/{name}")
        for d in deps:
            if targets.get(d, {}).get("type") in TEST_TYPES or targets.get(d, {}).get("path", "").startswith("Tests/"):
                errors.append(f"{name} -> {d}: a product target depends on a test target")
            elif tier_of(d) is None:
                errors.append(f"{name} -> {d}: {d} has no tier")
            elif tier_of(d) >= tier:
                errors.append(f"{name} (tier {tier}) -> {d} (tier {tier_of(d)}): the edge points up or sideways")
        for bad in sorted(FORBIDDEN_REACH.get(name, set()) & reach(targets, name)):
            errors.append(f"{name} reaches {bad} (it must not link it)")
    for name, t in sorted(targets.items()):
        if root is None or t.get("type") == "system-target":
            continue
        allowed = set(t.get("target_dependencies") or []) | {name}
        for module, file in sorted(imports(root, t["path"])):
            if module in targets and module not in allowed:
                errors.append(f"{os.path.relpath(file, root)}: imports {module}, which {name} does not declare")
    return errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--describe", help="package description JSON (default: run swift package describe)")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = ap.parse_args()
    if a.describe:
        with open(a.describe, encoding="utf-8") as f:
            describe = json.load(f)
        root = None   # a fixture graph has no sources to scan
    else:
        out = subprocess.run(["swift", "package", "describe", "--type", "json"], cwd=a.root,
                             capture_output=True, text=True, check=True).stdout
        describe = json.loads(out[out.index("{"):])
        root = a.root
    errors = check(describe, root)
    for e in errors:
        print(f"check-graph: {e}", file=sys.stderr)
    if errors:
        return 1
    n = sum(len(t.get("target_dependencies") or []) for t in describe["targets"])
    print(f"check-graph: {len(describe['targets'])} targets, {n} edges, all pointing down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
