"""The Debian packages `make run` and `make test` need, installed when missing.

Run as root on a machine with apt-get, `ensure` installs the missing ones; otherwise it stops
with the one command to run (`sudo apt-get install …`). `python -m devtools.system_packages
test` is what `make test` runs before pytest (exit status 1, and nothing tested, when missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from glob import glob


@dataclass(frozen=True)
class Need:
    """A Debian package, present when one of its `programs` is on PATH or at an absolute path."""

    package: str
    programs: tuple[str, ...]

    def present(self) -> bool:
        return any(
            glob(program) if program.startswith("/") else shutil.which(program)
            for program in self.programs
        )


REDIS = Need("redis-server", ("redis-server",))
# The browser tests drive `CHROMIUM` (default: Debian's /usr/bin/chromium) headless.
CHROMIUM = Need("chromium", (os.environ.get("CHROMIUM", "/usr/bin/chromium"),))
# pg_dump / pg_restore: backups and restores of a PostgreSQL database.
PG_CLIENT = Need("postgresql-client", ("pg_dump",))
# initdb / pg_ctl: the fault drills start PostgreSQL clusters of their own.
PG_SERVER = Need("postgresql", ("initdb", "/usr/lib/postgresql/*/bin/initdb"))

FOR = {
    "run": [REDIS],
    "test": [REDIS, CHROMIUM, PG_CLIENT, PG_SERVER],
}


class Missing(Exception):
    """Packages are missing and cannot be installed here; the message says what to run."""


def missing(needs: list[Need]) -> list[str]:
    return [need.package for need in needs if not need.present()]


def ensure(needs: list[Need], purpose: str) -> None:
    """Install the missing packages of `needs` (root with apt-get), else raise Missing."""
    packages = missing(needs)
    if not packages:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"[nightshift] {purpose} needs {' '.join(packages)}: installing", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            check=True,
            env=env,
        )
        packages = missing(needs)
        if not packages:
            return
    raise Missing(
        f"{purpose} needs the Debian packages {', '.join(packages)}. Run:\n"
        f"    sudo apt-get install {' '.join(packages)}\n"
        f"then `make {purpose}` again."
    )


def main(argv: list[str]) -> int:
    [purpose] = argv
    try:
        ensure(FOR[purpose], purpose)
    except Missing as error:
        print(f"[nightshift] error: {error}", file=sys.stderr, flush=True)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"[nightshift] error: {' '.join(error.cmd)} failed", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
