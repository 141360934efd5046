"""Runs INSIDE the image tree (chroot, the image's own python3), at build time only.

Imports what the node's Python programs import at boot (top-level imports of the given
scripts, every module of the given packages) and writes bytecode for exactly those modules,
as unchecked-hash .pyc: valid whatever the file times (the initramfs clamps them) and never
re-validated, since a RAM root does not change under the interpreter. Prints the count.

    python3 -I precompile.py --package tyd --package vici SCRIPT...
"""

import argparse
import importlib
import importlib.machinery
import importlib.util
import pkgutil
import py_compile
import sys


def load_script(path: str) -> None:
    name = "_chaos_script_" + path.rsplit("/", 1)[-1].replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    if spec is None:
        raise SystemExit(f"{path}: cannot load")
    loader.exec_module(importlib.util.module_from_spec(spec))  # scripts guard main()


def package_files(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    files = [pkg.__file__ or ""]
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if info.name.endswith(".__main__"):
            spec = importlib.util.find_spec(info.name)
            files.append(spec.origin if spec and spec.origin else "")
        else:
            files.append(importlib.import_module(info.name).__file__ or "")
    return files


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", action="append", default=[])
    ap.add_argument("scripts", nargs="*")
    args = ap.parse_args()
    for script in args.scripts:
        load_script(script)
    files = {f for p in args.package for f in package_files(p)}
    files |= {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
    sources = sorted(f for f in files if f.endswith(".py"))
    for path in sources:
        py_compile.compile(
            path, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
    print(len(sources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
