"""Real Raspberry Pi wheels: the master, piw-fake-pypi, and two builders in emulated Pi
userlands (Debian bookworm armhf and arm64 under qemu-user, made by piw-builder-image), each
with its own RabbitMQ user, speaking to the master over the network as a Pi does. They build a
generated C sdist linking zlib, a real sdist with a C extension (MarkupSafe) and a pure one;
then, inside each userland, pip installs the wheels from our web service and Python imports
the extensions: the Pi owner's path, on ARM."""

import io
import json
import shutil
import struct
import subprocess
import uuid
import zipfile
import zlib

import pytest
import requests

from piw_services.cli import builder_user as builder_user_cli
from tests.conftest import BIN, wait_for
from tests.e2e.conftest import MARKUPSAFE, builds, ev, files, release

pytestmark = pytest.mark.slow(minutes=10)  # two userlands set up, six emulated builds

ARMV7, AARCH64 = "cp311-linux_armv7l", "cp311-linux_aarch64"
#: ELF class (1: 32-bit, 2: 64-bit) and machine (40: ARM, 183: AArch64) of each target's code
ELF = {ARMV7: (1, 40), AARCH64: (2, 183)}
ARCH_OF = {ARMV7: "armhf", AARCH64: "arm64"}


def elf_headers(wheel: bytes) -> dict[str, tuple[int, int]]:
    """(class, machine) of every ELF member of a wheel."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        for member in zf.namelist():
            head = zf.read(member)[:20]
            if head[:4] == b"\x7fELF":
                found[member] = (head[4], struct.unpack("<H", head[18:20])[0])
    return found


def run_in(root, script, timeout=900):
    """A shell script in an emulated userland, as its unprivileged user, clean environment."""
    return subprocess.run([str(BIN / "piw-builder-image"), "run", str(root), "sh", "-c",
                           script], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def arm_upstream(upstream_packages, markupsafe_sdist, tmp_path):
    """The suite's upstream files plus MarkupSafe's real sdist."""
    packages = tmp_path / "upstream-packages"
    shutil.copytree(upstream_packages, packages)
    shutil.copy(markupsafe_sdist, packages)
    return packages


def test_emulated_pi_builders_build_wheels_a_pi_installs(system, db, rpc, arm_roots,
                                                         arm_upstream, processes):
    roots = {target: arm_roots[ARCH_OF[target]][0] for target in ELF}
    # the target each builder announces comes from its userland's own Python
    assert {target: arm_roots[ARCH_OF[target]][1] for target in ELF} == {t: t for t in ELF}
    markupsafe = [ev("MarkupSafe", None, "create", 30),
                  ev("MarkupSafe", "2.1.5", "new release", 31),
                  ev("MarkupSafe", "2.1.5", f"add source file {MARKUPSAFE[0]}", 32)]
    system.start(release("Pure.Pkg", "1.0", 1, "pure") + release("zlib-user", "0.2", 10,
                                                                   "c-zlib") + markupsafe,
                 abis="cp311:linux_armv7l:bookworm,cp311:linux_aarch64:bookworm",
                 packages=arm_upstream)
    # the image's preinstalled packages, from the userland itself
    listed = set()
    for root in roots.values():
        listing = subprocess.run([str(BIN / "piw-builder-image"), "packages", str(root)],
                                 capture_output=True, text=True, check=True).stdout
        listed |= set(listing.split())
    assert {"libc6", "zlib1g", "python3"} <= listed
    load = subprocess.run([str(BIN / "piw-image-packages"), "load", "--distro", "bookworm",
                           "-"], input="\n".join(sorted(listed)) + "\n", env=system.env,
                          capture_output=True, text=True)
    assert load.returncode == 0, load.stderr

    users = []
    for target, root in roots.items():
        name = f"piw-test-emu-{target[-7:]}-{uuid.uuid4().hex[:6]}"
        done = subprocess.run([str(BIN / "piw-builder-user"), name, "--target", target],
                              env=system.env, capture_output=True, text=True, check=True)
        [uri] = [line.split(": ", 1)[1] for line in done.stdout.splitlines()
                 if line.startswith("AMQP_URI: ")]
        users.append(name)
        processes.start(f"emu-{target}", [
            str(BIN / "piw-builder-image"), "run",
            "-e", f"PIW_BUILDER_AMQP_URI={uri}",
            "-e", f"PIW_BUILDER_INDEX_URL={system.env['PIW_UPSTREAM']}/simple/",
            "-e", "PIW_HEARTBEAT_INTERVAL=1",
            str(root), "piw-builder", "--label", f"emu-{target}"])
    try:
        packages = ("pure-pkg", "zlib-user", "markupsafe")
        wait_for(lambda: all(t["state"] in ("built", "failed")
                             for p in packages for t in system.targets(p))
                 and len([t for p in packages for t in system.targets(p)]) == 6,
                 1800, interval=2, what="the emulated builds",
                 describe=lambda: {p: system.targets(p) for p in packages})
        check_builds(system, db, rpc, roots)
    finally:
        for name in users:
            builder_user_cli.main([name, "--remove"])


def check_builds(system, db, rpc, roots):
    targets = {(p, t["abi"]): t for p in ("pure-pkg", "zlib-user", "markupsafe")
               for t in system.targets(p)}
    assert {key: t["state"] for key, t in targets.items()} == {
        (p, t): "built" for p in ("pure-pkg", "zlib-user", "markupsafe") for t in ELF}
    recorded = builds(db)
    # a pure wheel built by one target settles the other: one build of pure-pkg
    assert [b["files"] for b in recorded if b["package"] == "pure-pkg"] == [
        ["pure_pkg-1.0-py3-none-any.whl"]]
    assert {b["label"] for b in recorded} <= {f"emu-{t}" for t in ELF}
    rows = files(db)
    for target, (elf_class, machine) in ELF.items():
        platform = target.split("-", 1)[1]
        for stem in ("zlib_user-0.2", "markupsafe-2.1.5"):
            name = f"{stem}-cp311-cp311-{platform}.whl"
            assert name in rows, sorted(rows)
            assert rows[name].abi == target
            wheel = requests.get(f"{system.web}/simple/{stem.split('-')[0].replace('_', '-')}/"
                                 f"{name}", timeout=10)
            assert wheel.ok, name
            headers = elf_headers(wheel.content)
            assert headers and set(headers.values()) == {(elf_class, machine)}, headers
        # the dependency is the userland's own package, as dpkg -S names it there
        assert "zlib1g" in rows[f"zlib_user-0.2-cp311-cp311-{platform}.whl"].apt_depends
    # a Debian armhf image is not ARMv6-compatible: no armv6l name for its wheels
    assert not [name for name in rows if "armv6l" in name]
    # the project page shows what a Pi owner must install less the image's own packages
    page = requests.get(f"{system.web}/project/zlib-user/json/", timeout=10).json()
    for f in page["versions"][0]["files"]:
        assert "libc6" not in f["apt_depends"] and "zlib1g" not in f["apt_depends"], f
    html = requests.get(f"{system.web}/project/zlib-user/", timeout=10).text
    assert "ARMv7: not for Pi 1 or Zero" in html and "also armv6l" not in html
    status = rpc.build_dispatch.status()
    assert {(b["label"], b["abi"]) for b in status["builders"]} == {
        (f"emu-{t}", t) for t in ELF}

    # the Pi owner's path, on ARM: pip install from our index, then import the extensions
    index = f"{system.web}/simple/"
    script = (
        "set -e; python3 -m venv $HOME/owner; . $HOME/owner/bin/activate; "
        f"pip install -q --disable-pip-version-check --only-binary :all: --index-url {index} "
        "zlib-user markupsafe pure-pkg; "
        "python -c 'import json, platform, zlib_user, markupsafe, markupsafe._speedups, "
        "pure_pkg; print(json.dumps([platform.machine(), zlib_user.zlib_version(), "
        "zlib_user.crc32(b\"piw\"), str(markupsafe.escape(\"<pi>\")), "
        "markupsafe._speedups.__file__]))'")
    for target, root in roots.items():
        done = run_in(root, script)
        assert done.returncode == 0, done.stdout + done.stderr
        machine, zlib_version, crc, escaped, speedups = json.loads(
            done.stdout.strip().splitlines()[-1])
        assert machine == target.split("_", 1)[1], (target, machine)
        assert zlib_version.startswith("1.") and crc == zlib.crc32(b"piw")
        assert escaped == "&lt;pi&gt;" and speedups.endswith(".so")
    system.audit()
