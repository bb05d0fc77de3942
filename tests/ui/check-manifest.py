#!/usr/bin/env python3
"""Checks the Flatpak manifest without building it (that needs the network):
valid JSON, the app id, runtime and permissions the studio needs, and a module
list true to the build: every library the meson files ask for is in the GNOME
runtime or built by a module, and glslc (not in the runtime) comes from the
shaderc module.

usage: check-manifest.py flatpak/io.github.reverie.Reverie.json
"""
import json
import os
import re
import sys

# what org.gnome.Platform / org.gnome.Sdk provide (pkg-config names)
RUNTIME_LIBS = {
    "glib-2.0", "gio-2.0", "gmodule-2.0", "json-glib-1.0", "vulkan", "gtk4",
    "libadwaita-1", "libsoup-3.0", "gnutls", "gdk-pixbuf-2.0", "cairo", "threads",
}
# programs the build needs that the SDK lacks, and the module that builds each
BUILT_PROGRAMS = {"glslc": "shaderc"}
# programs only the tests use (optional in the meson files)
TEST_PROGRAMS = {"node", "nodejs", "python3", "desktop-file-validate", "appstream-util",
                 "glib-compile-schemas", "/usr/bin/python3"}


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def meson_files(root):
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith((".", "build")) and x not in ("subprojects", "node_modules")]
        for f in files:
            if f == "meson.build":
                yield os.path.join(d, f)


def main():
    path = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    with open(path) as f:
        try:
            m = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{path} is not valid JSON: {e}")

    if m.get("id", m.get("app-id")) != "io.github.reverie.Reverie":
        fail("the app id must be io.github.reverie.Reverie")
    if m.get("runtime") != "org.gnome.Platform" or m.get("sdk") != "org.gnome.Sdk":
        fail("runtime and sdk must be org.gnome.Platform / org.gnome.Sdk")
    if m.get("command") != "reverie":
        fail("the command must be reverie")
    if "--device=dri" not in m.get("finish-args", []):
        fail("finish-args must give --device=dri (Vulkan)")

    modules = {mod["name"]: mod for mod in m.get("modules", []) if isinstance(mod, dict)}
    if list(modules)[-1:] != ["reverie"]:
        fail("the last module must be reverie itself")
    app = modules["reverie"]
    if app.get("buildsystem") != "meson":
        fail("reverie builds with meson")
    if not any(s.get("type") == "dir" and s.get("path") == ".." for s in app.get("sources", [])):
        fail("reverie's source must be this tree (type dir, path ..)")

    # -D options must exist
    with open(os.path.join(root, "meson_options.txt")) as f:
        options = set(re.findall(r"option\('([^']+)'", f.read()))
    for opt in app.get("config-opts", []):
        name = re.match(r"-D([^=]+)=", opt)
        if name and name.group(1) not in options:
            fail(f"reverie's config-opts name an unknown option: {opt}")

    # every library and program the build asks for is accounted for
    for mf in meson_files(root):
        text = open(mf).read()
        for dep in re.findall(r"dependency\('([^']+)'", text):
            if dep not in RUNTIME_LIBS and dep not in modules:
                fail(f"{os.path.relpath(mf, root)} needs {dep}: neither in the runtime nor a module")
        for call in re.findall(r"find_program\(([^)]*)\)", text):
            names = re.findall(r"'([^']+)'", call)
            optional = "required: false" in call
            for prog, module in BUILT_PROGRAMS.items():
                if prog in names and module not in modules:
                    fail(f"{prog} is needed by {os.path.relpath(mf, root)}: add the {module} module")
            if not optional and names and names[0] not in BUILT_PROGRAMS and names[0] not in TEST_PROGRAMS:
                fail(f"{os.path.relpath(mf, root)} needs the program {names[0]}: say where it comes from")
    for module in modules.values():
        for src in module.get("sources", []):
            if src.get("type") == "git" and not (src.get("tag") or src.get("commit")):
                fail(f"{module['name']}: git sources must be pinned to a tag or commit")
    print(f"ok: {path}: {len(modules)} modules ({', '.join(modules)})")


main()
