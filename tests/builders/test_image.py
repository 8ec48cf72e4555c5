"""piw-builder-image's pure parts and its refusals (the emulated builds themselves are in
tests/e2e/test_arm.py)."""

import logging
import zipfile

import pytest

from builders import image

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_the_one_apt_uses_for_that_distro(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text(DEB822)
    assert image.debian_mirror("bookworm", [sources]) == "http://mirror.example/debian"
    # a suite no source carries (security and updates suites are not mirrors of it)
    assert image.debian_mirror("trixie", [sources]) == image.FALLBACK_MIRROR
    one_line = tmp_path / "sources.list"
    one_line.write_text("# deb http://commented.example/debian bookworm main\n"
                        "deb-src http://src.example/debian bookworm main\n"
                        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian "
                        "bullseye main\n")
    assert image.debian_mirror("bullseye", [one_line]) == "http://old.example/debian"
    assert image.debian_mirror("bookworm", [one_line, tmp_path / "missing.list"]) == (
        image.FALLBACK_MIRROR)
    disabled = tmp_path / "off.sources"
    disabled.write_text(DEB822.replace("Types: deb\n#", "Enabled: no\nTypes: deb\n#", 1))
    assert image.debian_mirror("bookworm", [disabled]) == image.FALLBACK_MIRROR


def test_cache_dir_is_outside_the_checkout_and_overridable(tmp_path):
    assert image.cache_dir({"PIW_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    assert image.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "piw"
    assert image.cache_dir({"HOME": "/nowhere"}).name == "piw"


def test_a_userland_is_named_by_its_package_set():
    armhf = image.Userland("armhf")
    assert armhf.name.startswith("bookworm-armhf-")
    assert image.Userland("armhf", "bookworm", ("libpq-dev",)).name != armhf.name
    assert image.Userland("armhf", extra=("zlib1g-dev",)).name == armhf.name  # already in
    assert set(image.BASE_PACKAGES) <= set(armhf.packages)


def test_the_builder_venv_layer_is_named_by_the_wheels_own_requirements(tmp_path):
    wheel = tmp_path / "piw-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("piw-0.1.0.dist-info/METADATA", (
            "Metadata-Version: 2.1\nName: piw\nVersion: 0.1.0\n"
            "Requires-Dist: kombu==5.7.0\n"
            "Requires-Dist: tomli>=1; python_version < \"3.11\"\n"
            "Provides-Extra: master\n"
            "Requires-Dist: nameko==2.14.1; extra == \"master\"\n"
            "Requires-Dist: amqp==5.4.2\n\nREADME body: Requires-Dist: not-a-header\n"))
        zf.writestr("piw/sub/x.dist-info/METADATA", "Requires-Dist: vendored==1\n")
    requirements = image.wheel_requirements(wheel)
    assert requirements == ["amqp==5.4.2", "kombu==5.7.0", 'tomli>=1; python_version < "3.11"']
    armhf = image.Userland("armhf")
    layer = armhf.venv_layer(tmp_path, requirements)
    assert layer.parent == armhf.tarball(tmp_path).parent
    assert layer.name.startswith(armhf.name + "-venv-")
    assert armhf.venv_layer(tmp_path, requirements[:2]) != layer  # a new pin: a new layer
    assert image.Userland("arm64").venv_layer(tmp_path, requirements) != layer
    tarball = armhf.tarball(tmp_path)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tarball.write_bytes(b"a userland made again")  # image --rebuild: its layers are not reused
    assert armhf.venv_layer(tmp_path, requirements) != layer


@pytest.mark.parametrize("arch, distro, extra, problem", [
    ("armel", "bookworm", (), "--arch must be one of armhf, arm64"),
    ("armhf", "../etc", (), "--distro '../etc' is not a Debian name"),
    ("arm64", "bookworm", ("libpq-dev; rm -rf /",), "is not a Debian name"),
])
def test_bad_userlands_are_refused(arch, distro, extra, problem):
    with pytest.raises(image.ImageError, match=problem.replace("(", r"\(")):
        image.Userland(arch, distro, extra)


def test_a_cached_userland_is_reused_without_debootstrap(tmp_path, caplog):
    userland = image.Userland("arm64")
    tarball = userland.tarball(tmp_path)
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"made before")
    with caplog.at_level(logging.INFO, logger="piw-builder-image"):
        assert image.make_image(userland, tmp_path) == tarball
    assert tarball.read_bytes() == b"made before"
    assert "reusing" in caplog.text


def test_cli_refusals(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        image.main(["image", "--arch", "mips"])
    assert exit_info.value.code == 2
    assert image.main(["run", str(tmp_path), "true"]) == 1
    assert "is not a root made by `piw-builder-image setup`" in capsys.readouterr().err
    assert image.main(["packages", str(tmp_path / "none")]) == 1
    assert image.main(["image", "--distro", "a b"]) == 1
    assert "is not a Debian name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        image.main(["run", "-e", "NOEQUALS", str(tmp_path), "true"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        image.main(["run", str(tmp_path)])
    assert exit_info.value.code == 2


def test_wheels_of_the_checkout_are_built_one_at_a_time(tmp_path):
    """Both userlands of one run set up at once, and setuptools builds in the checkout's own
    build/: a second build of the checkout waits for the first (CI saw "File exists:
    build/bdist.linux-x86_64/wheel/piw-0.1.0.dist-info" without this)."""
    import hashlib
    import tempfile
    import threading
    import time
    from pathlib import Path

    source = Path(image.__file__).resolve().parent.parent
    key = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    built: list[str] = []
    with image._locked(Path(tempfile.gettempdir()) / f"piw-wheel-{key}.lock"):
        worker = threading.Thread(target=lambda: built.append(
            image._builder_wheel(None, tmp_path)))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and not list(tmp_path.glob("*.whl"))
    worker.join(300)
    assert built and Path(built[0]).name.startswith("piw-")
