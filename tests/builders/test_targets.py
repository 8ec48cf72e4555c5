"""Build targets (an ABI on a platform) as pure functions: the key, its queue, a builder's
permissions, which wheels fit a target, and how a builder finds its own target."""

import re
import sys

import pytest

from builders import protocol, sysinfo
from builders.config import ConfigError, Interpreter, load_settings, probe_python

ARMV7, AARCH64, CP313 = "cp311-linux_armv7l", "cp311-linux_aarch64", "cp313-linux_aarch64"


def test_a_key_is_abi_dash_platform_and_splits_back():
    assert protocol.target_key("cp311", "linux_armv7l") == ARMV7
    assert protocol.split_target(CP313) == ("cp313", "linux_aarch64")
    assert protocol.check_target("cp311-linux_x86_64") == "cp311-linux_x86_64"
    for bad in ("cp311", "cp311-", "-linux_armv7l", "cp311-any", "cp311-linux_armv7l-x",
                "cp311-Linux_ARMV7L", "cp311-linux armv7l", "../x-linux_armv7l", None, 311):
        with pytest.raises(protocol.ProtocolError, match="not a build target like cp311-"):
            protocol.split_target(bad)
    with pytest.raises(protocol.ProtocolError, match="not a platform tag"):
        protocol.target_key("cp311", "linux-armv7l")
    # operators may name a target, or a bare ABI meaning each of its targets
    assert protocol.check_target_or_abi("cp311") == "cp311"
    assert protocol.check_target_or_abi(ARMV7) == ARMV7
    with pytest.raises(protocol.ProtocolError, match="or an ABI tag like cp311"):
        protocol.check_target_or_abi("cp3; rm -rf /")


def test_each_target_has_its_queue_and_a_builder_reads_only_its_own():
    assert protocol.job_queue(ARMV7) == "piw.builds.cp311-linux_armv7l"
    perms = protocol.builder_permissions(ARMV7)
    assert re.search(perms["read"], protocol.job_queue(ARMV7))
    assert re.search(perms["read"], "amq.gen-AbC123")  # its own reply queue
    for other in (protocol.job_queue(AARCH64), protocol.job_queue(CP313), "piw.builds.cp311",
                  "piw.builds.cp311-linux_armv7lx", "xpiw.builds.cp311-linux_armv7l",
                  "nameko-rpc", "rpc-build_dispatch"):
        assert not re.search(perms["read"], other), other
    assert re.search(protocol.builder_permissions()["read"], protocol.job_queue(CP313))
    with pytest.raises(protocol.ProtocolError):
        protocol.builder_permissions("cp311")


@pytest.mark.parametrize(("filename", "target", "fits"), [
    ("foo-1.0-cp311-cp311-linux_armv7l.whl", ARMV7, True),
    ("foo-1.0-cp311-cp311-linux_aarch64.whl", AARCH64, True),
    ("foo-1.0-py3-none-any.whl", ARMV7, True),  # pure: every platform
    ("foo-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", AARCH64, True),
    ("foo-1.0-cp311-cp311-linux_x86_64.whl", "cp311-linux_x86_64", True),
    ("foo-1.0-cp311-cp311-linux_aarch64.whl", ARMV7, False),
    ("foo-1.0-cp311-cp311-linux_armv7l.whl", AARCH64, False),
    ("foo-1.0-cp311-cp311-linux_armv6l.whl", ARMV7, False),
    ("foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", AARCH64, False),
    ("foo-1.0-cp311-cp311-linux_armv7l.linux_aarch64.whl", ARMV7, False),
])
def test_a_platform_wheel_fits_only_its_targets_platform(filename, target, fits):
    problem = protocol.wheel_target_problem(filename, target)
    assert (problem is None) is fits, problem
    if not fits:
        assert f"but its job is for {protocol.split_target(target)[1]}" in problem


def test_jobs_and_hellos_carry_the_target():
    job = protocol.check_job(protocol.job("j1", "foo", "1.0", AARCH64, []))
    assert (job["target"], job["abi"], job["platform"]) == (AARCH64, "cp311", "linux_aarch64")
    with pytest.raises(protocol.ProtocolError, match="not a build target"):
        protocol.check_job({**job, "target": "cp311"})
    hello = protocol.check_hello(protocol.hello("pi", "cp311", {
        "platform": "linux_armv7l", "preinstalled": []}))
    assert protocol.hello_target(hello) == ARMV7
    with pytest.raises(protocol.ProtocolError, match="not a platform tag"):
        protocol.check_hello({**hello, "platform": "linux-armv7l; x"})


def test_a_builder_derives_its_target_from_the_interpreters_userland():
    # 32-bit Raspberry Pi OS on a 64-bit kernel: uname says aarch64, the wheels are armv7l
    assert Interpreter("cp311", "3.11.2", sysinfo.platform_tag("linux-aarch64", True)
                       ).target == ARMV7
    assert Interpreter("cp311", "3.11.2", sysinfo.platform_tag("linux-aarch64", False)
                       ).target == AARCH64
    here = probe_python(sys.executable)
    assert here.target == f"{sysinfo.abi_tag()}-{sysinfo.platform_tag()}"
    told = probe_python(sys.executable, platform="linux_armv7l")
    assert told.target == f"{sysinfo.abi_tag()}-linux_armv7l"


def test_the_platform_setting(tmp_path):
    env = {"PIW_BUILDER_WORK_DIR": str(tmp_path)}
    assert load_settings(env=env).platform is None
    assert load_settings(env={**env, "PIW_BUILDER_PLATFORM": "linux_aarch64"}
                         ).platform == "linux_aarch64"
    with pytest.raises(ConfigError, match="PLATFORM not a platform tag"):
        load_settings(env={**env, "PIW_BUILDER_PLATFORM": "arm 64"})
