#!/usr/bin/env python3
"""Runs every ```python, ```js, ```php and ```c block of README.md, so the quick start
cannot rot. Needs the suites before it: the Python venv (target/py-venv), the Node addon
(bindings/node), and libmemwarden.so (target/release). Prints 'N passed, M failed'."""
import os
import re
import subprocess
import sys
import tempfile

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
venv_python = os.path.join(os.environ.get("MEMWARDEN_VENV", os.path.join(target, "py-venv")), "bin", "python")

readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
blocks = [(m.group(1), m.group(2), readme[: m.start()].count("\n") + 1)
          for m in re.finditer(r"^```(python|js|php|c)\n(.*?)^```", readme, re.S | re.M)]

tmp = tempfile.mkdtemp(prefix="memwarden-readme-")
node_modules = os.path.join(tmp, "node_modules")
os.makedirs(node_modules)
os.symlink(os.path.join(root, "bindings", "node"), os.path.join(node_modules, "memwarden"))


def run(lang, code, n):
    if lang == "python":
        return [venv_python, "-c", code], None
    if lang == "js":
        path = os.path.join(tmp, f"snippet{n}.js")
        open(path, "w").write(code)
        return ["node", path], None
    if lang == "php":
        autoload = os.path.join(root, "bindings", "php", "autoload.php")
        code = code.replace("<?php", f"<?php\nrequire {autoload!r};", 1)
        path = os.path.join(tmp, f"snippet{n}.php")
        open(path, "w").write(code)
        return ["php", path], None
    src = os.path.join(tmp, f"snippet{n}.c")
    exe = os.path.join(tmp, f"snippet{n}")
    open(src, "w").write(code)
    lib = os.path.join(target, "release")
    build = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{root}/include", src, f"-L{lib}",
             "-lmemwarden", f"-Wl,-rpath,{lib}", "-o", exe]
    return [exe], build


passed = failed = 0
for n, (lang, code, line) in enumerate(blocks):
    cmd, build = run(lang, code, n)
    try:
        if build:
            subprocess.run(build, check=True, capture_output=True, text=True, timeout=120)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp)
        ok = out.returncode == 0
        detail = out.stdout + out.stderr
    except subprocess.CalledProcessError as e:
        ok, detail = False, e.stdout + e.stderr
    except subprocess.TimeoutExpired:
        ok, detail = False, "timed out"
    status = "ok" if ok else "FAILED"
    print(f"README.md:{line} ({lang}) ... {status}")
    if not ok:
        print("    " + detail.replace("\n", "\n    "))
        failed += 1
    else:
        passed += 1

if not blocks:
    print("no snippets found in README.md")
    failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
