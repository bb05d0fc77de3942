#!/usr/bin/python3
"""The front ends (src/cli, src/server, src/app) see the engine through its
public headers only: reverie.h, io/rv-image-io.h, and the model catalogue
and Hub downloader (io/rv-catalogue.h, io/rv-hub.h).

Every #include of every C file and header there must name config.h, one of
one of the public headers, or a front end's own header. A quoted include with a
directory part must lead, from the including file's folder, to a front-end
file or to a public header: "../engine/vk/rv-device.h" fails here even though
the include path of the build would not have caught it. An <…> include that
names a private header of the engine, the reference runner or the developer
program fails too.

Usage: check-engine-boundary.py SOURCE_ROOT
Prints each offending line; exits 1 if there is one."""
import os
import re
import sys

ROOT = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
# src/common holds front-end pieces beside the engine (the content policy)
FRONT_ENDS = ["src/cli", "src/server", "src/app", "src/common"]
PUBLIC = {os.path.join(ROOT, "src/engine", h)
          for h in ("reverie.h", "io/rv-image-io.h", "io/rv-catalogue.h", "io/rv-hub.h")}
PRIVATE_TREES = ["src/engine", "src/reference", "src/dev"]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def headers_under(rel):
    out = set()
    for dirpath, _, names in os.walk(os.path.join(ROOT, rel)):
        out.update(os.path.join(dirpath, n) for n in names if n.endswith(".h"))
    return out


front_dirs = [os.path.join(ROOT, d) for d in FRONT_ENDS]
front_headers = set().union(*(headers_under(d) for d in FRONT_ENDS))
private = set().union(*(headers_under(d) for d in PRIVATE_TREES)) - PUBLIC
# names the build's include path may resolve: config.h (generated), the
# public headers, and the front ends' own headers
allowed_names = {"config.h"} | {os.path.basename(p) for p in PUBLIC | front_headers}
private_names = {os.path.basename(p) for p in private} - allowed_names


def in_front_end(path):
    return any(path == d or path.startswith(d + os.sep) for d in front_dirs)


def check(path, quote, name):
    """None if the include is fine, else why not."""
    if quote == "<":
        if os.path.basename(name) in private_names:
            return "a private engine header"
        return None
    beside = os.path.realpath(os.path.join(os.path.dirname(path), name))
    if os.path.isfile(beside):
        if in_front_end(beside) or beside in PUBLIC:
            return None
        return "%s is not a public engine header" % os.path.relpath(beside, ROOT)
    if "/" in name or name not in allowed_names:
        return "not a public engine header or a front end's own header"
    return None


def main():
    bad = 0
    scanned = 0
    for d in front_dirs:
        if not os.path.isdir(d):
            continue
        for dirpath, _, names in os.walk(d):
            for n in sorted(names):
                if not n.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, n)
                scanned += 1
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m is None:
                            continue
                        why = check(path, m.group(1), m.group(2))
                        if why is not None:
                            bad += 1
                            print("%s:%d: %s — %s" % (os.path.relpath(path, ROOT), lineno, line.strip(), why))
    if scanned == 0:
        sys.exit("no front-end sources under %s" % ROOT)
    print("%d front-end files scanned, %d include(s) past the engine boundary" % (scanned, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
