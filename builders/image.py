"""``piw-builder-image``: a builder without a Pi, in an emulated Raspberry Pi-like userland.

A Debian ``armhf`` or ``arm64`` userland made by ``debootstrap`` runs here under qemu-user
(binfmt_misc), so ``pip wheel`` inside it builds real ``linux_armv7l`` / ``linux_aarch64``
wheels and ``piw-builder`` inside it announces the target of the userland's own Python. The
userland is made once and kept as a zstd tarball in a cache directory outside any checkout
(``$PIW_CACHE_DIR``, else ``$XDG_CACHE_HOME/piw``, else ``~/.cache/piw``); a root unpacked from
it is set up like a Pi owner's: the host's CA bundle and resolver, a venv with ``pip install
piw`` (the lean builder package), an unprivileged ``piw`` user that builds run as. Commands run
in it with a clean environment (no host ``PIP_*`` variables or pip config) in a private mount
namespace (``unshare``), so ``/proc`` and ``/dev`` mounts end with the process, whatever kills
it. Needs root, ``debootstrap``, ``qemu-user-static`` and ``binfmt-support`` (``./run setup``
installs them on Debian).
"""

from __future__ import annotations

import argparse
import email.parser
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from builders.commandline import command_parser, configure_logging

__all__ = [
    "ARCHES",
    "ImageError",
    "Userland",
    "cache_dir",
    "check_host",
    "debian_mirror",
    "ensure_emulation",
    "main",
    "make_image",
    "root_command",
    "run_in_root",
    "setup_root",
    "wheel_requirements",
]

#: Debian architecture -> (qemu binfmt entry, the machine its Python reports).
ARCHES: dict[str, tuple[str, str]] = {"armhf": ("qemu-arm", "armv7l"),
                                      "arm64": ("qemu-aarch64", "aarch64")}
#: What every userland holds: a Python to build with, its headers, a compiler, and the -dev
#: package of zlib (the most common C dependency; the e2e suite's C sdist links it).
BASE_PACKAGES = ("python3", "python3-dev", "python3-venv", "python3-pip", "gcc", "libc6-dev",
                 "ca-certificates", "zlib1g-dev")
DEFAULT_DISTRO = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
#: Where the builder package lives inside a root, and the user builds run as.
VENV = "/opt/piw"
USER = "piw"
CLEAN_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


class ImageError(RuntimeError):
    """Something the operator must fix; the text says what."""


log = logging.getLogger("piw-builder-image")


def say(message: str) -> None:
    """Progress, on stderr from the command (stdout carries only its answer)."""
    log.info("%s", message)


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$PIW_CACHE_DIR``, else ``$XDG_CACHE_HOME/piw``, else ``~/.cache/piw``."""
    env = os.environ if env is None else env
    if env.get("PIW_CACHE_DIR"):
        return Path(env["PIW_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "piw"


def debian_mirror(distro: str, sources: Sequence[Path] | None = None) -> str:
    """The Debian mirror this host's apt uses for ``distro`` (a deb822 ``.sources`` or a
    one-line ``sources.list`` entry), else deb.debian.org; security and updates suites are
    not mirrors of the distribution."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"),
                   *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
                   *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in sources:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split()
                        and distro in fields.get("Suites", "").split()
                        and fields.get("Enabled", "yes") != "no"):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == distro:
                    return words[1]
    return FALLBACK_MIRROR


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ImageError(f"{kind} {value!r} is not a Debian name")
    return value


@dataclass(frozen=True)
class Userland:
    """One cached userland: a distribution on an architecture with a set of packages."""

    arch: str
    distro: str = DEFAULT_DISTRO
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ImageError(f"--arch must be one of {', '.join(ARCHES)}, not {self.arch!r}")
        _check_name("--distro", self.distro)
        for name in self.extra:
            _check_name("package", name)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted(set(BASE_PACKAGES) | set(self.extra)))

    @property
    def name(self) -> str:
        """The tarball's name: a new package set is a new tarball, never a stale one."""
        digest = hashlib.sha256(" ".join(self.packages).encode()).hexdigest()[:8]
        return f"{self.distro}-{self.arch}-{digest}"

    def tarball(self, cache: Path) -> Path:
        return cache / "userlands" / f"{self.name}.tar.zst"

    def venv_layer(self, cache: Path, requirements: Sequence[str]) -> Path:
        """The builder venv with *requirements* installed, kept beside the tarball: pip
        installing them under emulation takes minutes, unpacking them seconds. Named by the
        exact requirements (pinned) and the tarball it was made on (``image --rebuild`` makes
        a new one), so a new set or a new userland is a new layer, never a stale one."""
        tarball = self.tarball(cache)
        made = tarball.stat().st_mtime_ns if tarball.exists() else 0
        digest = hashlib.sha256("\n".join([str(made), *requirements]).encode()).hexdigest()[:8]
        return cache / "userlands" / f"{self.name}-venv-{digest}.tar.zst"


def wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's own dependencies (its Requires-Dist less those of extras), markers kept for
    the pip that installs them to evaluate on its own platform."""
    with zipfile.ZipFile(wheel) as zf:
        [metadata] = [name for name in zf.namelist()
                      if name.count("/") == 1 and name.endswith(".dist-info/METADATA")]
        message = email.parser.BytesParser().parsebytes(zf.read(metadata), headersonly=True)
    return sorted(line for line in message.get_all("Requires-Dist") or []
                  if "extra" not in str(Requirement(line).marker or ""))


def _host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(platform.machine(), "")


def ensure_emulation(arch: str) -> None:
    """Make sure this kernel runs ``arch`` binaries: binfmt_misc mounted and qemu's entry
    enabled (``update-binfmts``), or say which commands to run."""
    if _host_arch() == arch:
        return
    entry = ARCHES[arch][0]
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    try:
        if not (binfmt / "status").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)],
                           check=True, capture_output=True)
        if not (binfmt / entry).exists() or "enabled" not in (binfmt / entry).read_text():
            subprocess.run(["update-binfmts", "--enable", entry], check=True,
                           capture_output=True)
        if "enabled" in (binfmt / entry).read_text():
            return
    except (OSError, subprocess.CalledProcessError):
        pass
    raise ImageError(
        f"this kernel cannot run {arch} programs: install qemu-user-static and binfmt-support, "
        f"then as root `mount -t binfmt_misc binfmt_misc {binfmt}` and "
        f"`update-binfmts --enable {entry}`")


def check_host(arch: str) -> None:
    """Raise :class:`ImageError` unless this host can make and run ``arch`` userlands."""
    _require("debootstrap", "unshare", "chroot", "zstd", "tar")
    ensure_emulation(arch)


def _require(*commands: str) -> None:
    missing = [command for command in commands if shutil.which(command) is None]
    if missing:
        raise ImageError(f"missing {', '.join(missing)} (Debian: apt-get install debootstrap "
                         f"qemu-user-static binfmt-support zstd)")
    if os.geteuid() != 0:
        raise ImageError("must run as root (debootstrap, chroot and mounts need it)")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One holder of *path*'s lock at a time (one maker per tarball, one wheel build per
    checkout): a second waits, then finds the work done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        # polled, not blocking: a blocking flock would stall every green thread of a process
        # under eventlet (the tests), including the holder, which then never lets go
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
        yield


def _debootstrap(userland: Userland, target: Path, mirror: str) -> None:
    """debootstrap in a private mount namespace (its /proc mounts die with it), printing one
    line per stage instead of one per package."""
    command = ["unshare", "--mount", "--fork", "debootstrap", f"--arch={userland.arch}",
               "--variant=minbase", f"--include={','.join(userland.packages)}",
               userland.distro, str(target), mirror]
    say(f"$ {shlex.join(command)}")
    started, stage, count, tail = time.monotonic(), "", 0, []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-30:], line]
        verb = line[3:].split(" ", 1)[0] if line.startswith("I: ") else ""
        count += 1
        if verb and verb != stage:
            stage = verb
            say(f"  {time.monotonic() - started:5.0f}s {line[3:]}")
    if proc.wait() != 0:
        raise ImageError(f"debootstrap failed (exit status {proc.returncode}):\n"
                         + "\n".join(tail))


def make_image(userland: Userland, cache: Path | None = None, mirror: str | None = None,
               rebuild: bool = False) -> Path:
    """The userland's tarball, made (debootstrap, then zstd) when missing or ``rebuild``."""
    cache = cache_dir() if cache is None else cache
    tarball = userland.tarball(cache)
    with _locked(tarball.with_suffix(".lock")):
        if tarball.exists() and not rebuild:
            say(f"reusing {tarball} ({tarball.stat().st_size / 2**20:.0f} MiB)")
            return tarball
        _require("debootstrap", "unshare", "zstd", "tar")
        ensure_emulation(userland.arch)
        mirror = mirror or debian_mirror(userland.distro)
        say(f"making the {userland.distro} {userland.arch} userland from {mirror} "
            f"(several minutes under emulation; made once, then reused from {tarball.parent})")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".{userland.name}-",
                                         dir=tarball.parent) as work:
            root = Path(work) / "root"
            _debootstrap(userland, root, mirror)
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            (root / "var/cache/apt/archives/partial").mkdir(parents=True)
            for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
                lists.unlink()
            say(f"  {time.monotonic() - started:5.0f}s packing {tarball.name}")
            partial = Path(work) / tarball.name
            subprocess.run(["tar", "--numeric-owner", "-I", "zstd -T0 -3 -q", "-C", str(root),
                            "-cf", str(partial), "."], check=True)
            partial.replace(tarball)
        tarball.with_suffix(".json").write_text(json.dumps(
            {"arch": userland.arch, "distro": userland.distro, "mirror": mirror,
             "packages": userland.packages, "made": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()),
             "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
        say(f"made {tarball} ({tarball.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.monotonic() - started:.0f}s")
        return tarball


def _host_ca_bundle() -> Path:
    for candidate in (os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ImageError("no CA bundle found on this host (set SSL_CERT_FILE)")


def root_command(root: Path, command: Sequence[str], env: Mapping[str, str] | None = None,
                 user: str = USER) -> list[str]:
    """The command line running ``command`` in the unpacked userland ``root`` as ``user``,
    with a clean environment (PATH with the builder's venv first, HOME, LANG, plus ``env``)
    and /proc and /dev mounted in a mount namespace of its own. No fork: the process started
    becomes ``command`` itself, so a SIGTERM reaches it (piw-builder then hands its job
    back)."""
    root = Path(root).resolve()
    home = "/root" if user == "root" else f"/home/{user}"
    clean = {"PATH": CLEAN_PATH, "HOME": home, "LANG": "C.UTF-8", "USER": user,
             "LOGNAME": user, **(env or {})}
    chroot = ["chroot", f"--userspec={user}:{user}", str(root), "/usr/bin/env", "-i",
              *(f"{key}={value}" for key, value in clean.items()), *command]
    script = (f"mount -t proc proc {shlex.quote(str(root / 'proc'))} && "
              f"mount --rbind /dev {shlex.quote(str(root / 'dev'))} && "
              f"cd / && exec {shlex.join(chroot)}")
    return ["unshare", "--mount", "sh", "-c", script]


def run_in_root(root: Path, command: Sequence[str], env: Mapping[str, str] | None = None,
                user: str = USER, **kwargs: object) -> subprocess.CompletedProcess:
    """:func:`root_command` run to its end; keyword arguments go to ``subprocess.run``."""
    return subprocess.run(root_command(root, command, env, user),
                          **kwargs)  # type: ignore[call-overload]


def _builder_wheel(package: str | None, out: Path) -> str:
    """What to ``pip install`` in the root: ``package`` as given (a file is copied in), else
    a wheel of this checkout (when piw runs from one), else ``piw`` from the index."""
    source = Path(__file__).resolve().parent.parent
    if package is None and (source / "setup.cfg").exists():
        # setuptools builds in the checkout's build/: two builds at once (both userlands of
        # one run, or two commands) trip over each other ("File exists: ...dist-info")
        key = hashlib.sha256(str(source).encode()).hexdigest()[:12]
        with _locked(Path(tempfile.gettempdir()) / f"piw-wheel-{key}.lock"):
            say(f"building a wheel of {source}")
            done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                                   "-w", str(out), str(source)], env=_clean_host_env(),
                                  capture_output=True, text=True)
        if done.returncode:
            raise ImageError(f"cannot build a wheel of {source}:\n{done.stderr[-3000:]}")
        return str(next(out.glob("piw-*.whl")))
    return package or "piw"


def _clean_host_env() -> dict[str, str]:
    """The host's environment without pip's settings (a Pi owner has none of ours)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def setup_root(userland: Userland, root: Path, package: str | None = None,
               cache: Path | None = None, mirror: str | None = None) -> str:
    """Unpack the userland (made if missing) into ``root`` and set it up as a Pi owner
    would: CA bundle, resolver, the ``piw`` user, a venv at /opt/piw with the builder package
    (a wheel's dependencies come from its cached venv layer, made on first use). Returns the
    build target its Python announces (``cp311-linux_armv7l``)."""
    _require("unshare", "zstd", "tar", "chroot")
    cache = cache_dir() if cache is None else cache
    tarball = make_image(userland, cache, mirror)
    ensure_emulation(userland.arch)
    root = Path(root).resolve()
    if root.exists() and any(root.iterdir()):
        raise ImageError(f"{root} is not empty: give a new directory")
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run(["tar", "--numeric-owner", "-I", "zstd", "-xpf", str(tarball), "-C",
                    str(root)], check=True)
    say(f"unpacked {tarball.name} into {root} in {time.monotonic() - started:.1f}s")
    shutil.copyfile(_host_ca_bundle(), root / "etc/ssl/certs/ca-certificates.crt")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)

    def as_root(*command: str) -> None:
        done = run_in_root(root, command, user="root", capture_output=True, text=True)
        if done.returncode:
            raise ImageError(f"{shlex.join(command)} failed in {root}:\n"
                             f"{(done.stdout + done.stderr).strip()[-3000:]}")

    as_root("useradd", "--create-home", "--shell", "/bin/sh", USER)
    pip = (f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check")
    with tempfile.TemporaryDirectory(dir=root / "tmp") as inbox:
        spec = _builder_wheel(package, Path(inbox))
        layer = None
        if Path(spec).is_file():
            if spec.endswith(".whl"):
                requirements = wheel_requirements(Path(spec))
                layer = userland.venv_layer(cache, requirements)
            inside = Path(inbox) / Path(spec).name
            if Path(spec).resolve() != inside.resolve():
                shutil.copyfile(spec, inside)
            spec = "/" + str(inside.relative_to(root))
        started = time.monotonic()
        with _locked(layer.with_suffix(".lock")) if layer else nullcontext():
            if layer and layer.exists():
                subprocess.run(["tar", "--numeric-owner", "-I", "zstd", "-xpf", str(layer),
                                "-C", str(root)], check=True)
                say(f"unpacked the dependencies' venv {layer.name} "
                    f"in {time.monotonic() - started:.1f}s")
            else:
                as_root("python3", "-m", "venv", VENV)
                if layer:
                    say(f"pip install {' '.join(requirements)} (under emulation; kept as "
                        f"{layer.name})")
                    as_root(*pip, *requirements)
                    partial = layer.with_name(f".{layer.name}.{os.getpid()}")
                    try:
                        subprocess.run(["tar", "--numeric-owner", "-I", "zstd -T0 -3 -q", "-C",
                                        str(root), "-cf", str(partial), VENV.lstrip("/")],
                                       check=True)
                        partial.replace(layer)
                    finally:
                        partial.unlink(missing_ok=True)
        say(f"pip install {spec} (under emulation)")
        as_root(*pip, *(["--no-deps"] if layer else []), spec)
        say(f"installed in {time.monotonic() - started:.0f}s")
    target = run_in_root(root, [f"{VENV}/bin/python", "-c", _TARGET], capture_output=True,
                         text=True)
    if target.returncode:
        raise ImageError(f"the builder package does not run in {root}:\n{target.stderr}")
    return target.stdout.strip()


def _check_root(root: Path) -> None:
    if not (Path(root) / VENV.lstrip("/") / "bin/python").exists():
        raise ImageError(f"{root} is not a root made by `piw-builder-image setup`")


#: The build target piw-builder will announce: the same probe it runs at start.
_TARGET = ("import sys\nfrom builders.config import probe_python\n"
           "print(probe_python(sys.executable).target)")


def main(argv: list[str] | None = None) -> int:
    """``image``, ``setup``, ``run``, ``packages``; 0 done, 1 failed, 2 bad usage."""
    parser = command_parser(
        "piw-builder-image",
        "Make an emulated Raspberry Pi-like userland (Debian armhf or arm64 under qemu-user), "
        "install the piw builder in it and run commands in it. Common options go before the "
        "subcommand.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--arch", choices=sorted(ARCHES), default="armhf",
                        help="armhf builds linux_armv7l wheels, arm64 linux_aarch64 "
                             "(default: armhf)")
    common.add_argument("--distro", default=DEFAULT_DISTRO,
                        help=f"Debian release (default: {DEFAULT_DISTRO})")
    common.add_argument("--include", action="append", default=[], metavar="PKG",
                        help="an extra Debian package in the userland (e.g. libpq-dev); "
                             "repeat for more")
    common.add_argument("--cache-dir", type=Path,
                        help=f"where userland tarballs are kept (default: {cache_dir()})")
    common.add_argument("--mirror", help="Debian mirror (default: the one apt uses here)")
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image", parents=[common],
                           help="make the userland tarball if missing; print its path")
    image.add_argument("--rebuild", action="store_true", help="make it again even if cached")
    setup = sub.add_parser("setup", parents=[common],
                           help="unpack the userland into ROOT, install the builder; print "
                                "the build target")
    setup.add_argument("root", type=Path, metavar="ROOT")
    setup.add_argument("--package", help="what to pip install in ROOT (default: a wheel of "
                                         "this checkout, else piw)")
    run = sub.add_parser("run", help="run a command in ROOT with a clean environment "
                                     "(options before ROOT; all after it is the command)")
    run.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--user", default=USER, help=f"(default: {USER})")
    run.add_argument("root", type=Path, metavar="ROOT")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    packages = sub.add_parser("packages", help="the Debian packages installed in ROOT, one a "
                                               "line (for piw-image-packages load)")
    packages.add_argument("root", type=Path, metavar="ROOT")
    args = parser.parse_args(argv)
    configure_logging(args, log)
    try:
        if args.command == "run":
            env = dict(item.split("=", 1) for item in args.env if "=" in item)
            if len(env) != len(args.env):
                parser.error("--env takes NAME=VALUE")
            if not args.argv:
                parser.error("run: no COMMAND")
            _check_root(args.root)
            command = root_command(args.root, args.argv, env, user=args.user)
            os.execvp(command[0], command)
        if args.command == "packages":
            _check_root(args.root)
            return run_in_root(args.root, ["dpkg-query", "-W", "-f", "${Package}\\n"],
                               user="root").returncode
        userland = Userland(args.arch, args.distro, tuple(args.include))
        if args.command == "image":
            print(make_image(userland, args.cache_dir, args.mirror, args.rebuild))
        else:
            print(setup_root(userland, args.root, args.package, args.cache_dir, args.mirror))
        return 0
    except ImageError as exc:
        print(f"piw-builder-image: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"piw-builder-image: {shlex.join(map(str, exc.cmd))} failed "
              f"(exit status {exc.returncode})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
