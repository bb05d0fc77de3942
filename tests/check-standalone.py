#!/usr/bin/python3
"""Fails if any file of the project refers to a folder outside the repository
(the old location of the reference data and docs beside the checkout): the
build, the tests, the tools and the docs must work in a clone with nothing
beside it. Checks the tracked files (git ls-files), or every file of the
source tree when it is not a git checkout."""
import os
import re
import subprocess
import sys

# assembled from parts so that this file does not match itself
UP = r"\.\."
PATTERN = re.compile("|".join([
    UP + "/" + "shared",                       # a relative path up and into it
    "'" + UP + "' / 'shared'",                 # the same, joined by meson's path operator
    "SHARED" + "_DIR",                         # the old environment variable
    # documents that lived outside the repository (docs/ holds their facts)
    "(MODEL" + "_SPEC|TINY" + "_MODEL|LAVA" + "PIPE)\\.md",
    "shared" + "/golden",
]))


def project_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True,
                             check=True).stdout
        return [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith(("build", ".git", "node_modules"))]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return files


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = project_files(root)
    assert len(files) > 50, f"only {len(files)} files found under {root}"
    bad = []
    for rel in files:
        path = os.path.join(root, rel)
        if not os.path.isfile(path) or os.path.getsize(path) > 4 << 20:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            continue                            # binary (weights, images)
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if PATTERN.search(line):
                bad.append(f"{rel}:{n}: {line.strip()[:120]}")
    if bad:
        print("These lines refer to a folder outside the repository:")
        print("\n".join(bad))
        sys.exit(1)
    print(f"{len(files)} files checked: none refers outside the repository")


if __name__ == "__main__":
    main()
