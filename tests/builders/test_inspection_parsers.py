"""The pure parsers of ldd and dpkg -S output, on outputs captured from real systems."""

from __future__ import annotations

from builders.inspection import parse_dpkg_search, parse_ldd

LDD_X86_64 = """\
\tlinux-vdso.so.1 (0x00007ffc6b5f1000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f0e3c5a4000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e3c3c3000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e3c5e6000)
"""

# Raspberry Pi OS (armhf) preloads libarmmem through /etc/ld.so.preload; ldd lists it too.
ARMMEM = (
    "/usr/lib/arm-linux-gnueabihf/libarmmem-${PLATFORM}.so"
    " => /usr/lib/arm-linux-gnueabihf/libarmmem-v7l.so (0xb6f5c000)"
)
LDD_ARMHF = f"""\
\tlinux-vdso.so.1 (0xbef4c000)
\t{ARMMEM}
\tlibopenblas.so.0 => /lib/arm-linux-gnueabihf/libopenblas.so.0 (0xb6a1b000)
\tlibgfortran.so.5 => not found
\tlibm.so.6 => /lib/arm-linux-gnueabihf/libm.so.6 (0xb69a0000)
\tlibc.so.6 => /lib/arm-linux-gnueabihf/libc.so.6 (0xb684c000)
\t/lib/ld-linux-armhf.so.3 (0xb6f71000)
"""

LDD_OLD_GLIBC = """\
\tlinux-gate.so.1 =>  (0xb77a5000)
\tlibfoo.so.2 => not found
\tlibpthread.so.0 => /lib/i386-linux-gnu/i686/cmov/libpthread.so.0 (0xb7770000)
\tlibc.so.6 => /lib/i386-linux-gnu/i686/cmov/libc.so.6
\t/lib/ld-linux.so.2 (0xb77a6000)
"""


def test_parse_ldd_x86_64_skips_the_vdso_and_keeps_the_loader():
    assert parse_ldd(LDD_X86_64) == {
        "libz.so.1": "/lib/x86_64-linux-gnu/libz.so.1",
        "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2": "/lib64/ld-linux-x86-64.so.2",
    }


def test_parse_ldd_armhf_with_a_missing_library_and_a_preload():
    result = parse_ldd(LDD_ARMHF)
    assert result["libgfortran.so.5"] is None
    assert result["libopenblas.so.0"] == "/lib/arm-linux-gnueabihf/libopenblas.so.0"
    assert result["/usr/lib/arm-linux-gnueabihf/libarmmem-${PLATFORM}.so"] == (
        "/usr/lib/arm-linux-gnueabihf/libarmmem-v7l.so"
    )
    assert result["/lib/ld-linux-armhf.so.3"] == "/lib/ld-linux-armhf.so.3"
    assert "linux-vdso.so.1" not in result
    assert len(result) == 6


def test_parse_ldd_old_format_without_addresses_and_linux_gate():
    assert parse_ldd(LDD_OLD_GLIBC) == {
        "libfoo.so.2": None,
        "libpthread.so.0": "/lib/i386-linux-gnu/i686/cmov/libpthread.so.0",
        "libc.so.6": "/lib/i386-linux-gnu/i686/cmov/libc.so.6",
        "/lib/ld-linux.so.2": "/lib/ld-linux.so.2",
    }


def test_parse_ldd_static_and_non_dynamic_files_need_nothing():
    assert parse_ldd("\tstatically linked\n") == {}
    assert parse_ldd("\tnot a dynamic executable\n") == {}
    assert parse_ldd("") == {}


def test_parse_ldd_ignores_warnings_and_symbol_version_errors():
    output = (
        "ldd: warning: you do not have execution permission for `/tmp/x/mod.so'\n"
        "/tmp/x/mod.so: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.99' not found"
        " (required by /tmp/x/mod.so)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e3c3c3000)\n"
        "ldd: /usr/lib/ld-linux.so.2 exited with unknown exit code (139)\n"
        "/tmp/x/mod.so:\n"
    )
    assert parse_ldd(output) == {"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6"}


def test_parse_ldd_path_with_spaces_and_crlf():
    output = "\tlibbar.so.1 => /opt/my libs/libbar.so.1 (0x00007f00)\r\n\tlibq.so => not found\r\n"
    assert parse_ldd(output) == {"libbar.so.1": "/opt/my libs/libbar.so.1", "libq.so": None}


DPKG_OUTPUT = """\
zlib1g:amd64: /lib/x86_64-linux-gnu/libz.so.1
libc6:amd64, libc6:i386: /usr/share/doc/libc6
libc6:amd64: /lib64/ld-linux-x86-64.so.2
base-files: /etc/debian_version
libstdc++6:armhf: /usr/lib/arm-linux-gnueabihf/libstdc++.so.6
raspi-copies-and-fills: /usr/lib/arm-linux-gnueabihf/libarmmem-v7l.so
diversion by dash from: /bin/sh
diversion by dash to: /bin/sh.distrib
dash: /bin/sh
local diversion from: /etc/foo
local diversion to: /etc/foo.distrib
dpkg-query: no path found matching pattern /usr/lib/x86_64-linux-gnu/libz.so.1
"""


def test_parse_dpkg_search_strips_architectures_and_skips_noise():
    assert parse_dpkg_search(DPKG_OUTPUT) == {
        "/lib/x86_64-linux-gnu/libz.so.1": "zlib1g",
        "/usr/share/doc/libc6": "libc6",
        "/lib64/ld-linux-x86-64.so.2": "libc6",
        "/etc/debian_version": "base-files",
        "/usr/lib/arm-linux-gnueabihf/libstdc++.so.6": "libstdc++6",
        "/usr/lib/arm-linux-gnueabihf/libarmmem-v7l.so": "raspi-copies-and-fills",
        "/bin/sh": "dash",
    }


def test_parse_dpkg_search_shared_path_takes_the_first_package():
    output = "libfoo1:arm64, libfoo-dev:arm64: /usr/lib/aarch64-linux-gnu/libfoo.so.1\n"
    assert parse_dpkg_search(output) == {"/usr/lib/aarch64-linux-gnu/libfoo.so.1": "libfoo1"}


def test_parse_dpkg_search_only_errors_or_empty():
    errors = (
        "dpkg-query: no path found matching pattern /nope\n"
        "dpkg-query: no path found matching pattern /also/nope\n"
    )
    assert parse_dpkg_search(errors) == {}
    assert parse_dpkg_search("") == {}
