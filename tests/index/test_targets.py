"""The project page and its JSON show build status per target (ABI and platform), read from a
real database filled by build_dispatch's own functions."""

import json

from piw_services.build_dispatch import store as dispatch
from piw_services.index import data, render
from piw_services.index.model import SiteInfo
from tests.admin.test_actions import build, feed, release_rows

ARMV7, AARCH64, CP313 = "cp311-linux_armv7l", "cp311-linux_aarch64", "cp313-linux_aarch64"


def test_each_target_has_its_own_status(db):
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(ARMV7, "bookworm", True), (AARCH64, "bookworm"),
                                (CP313, "trixie")])
        feed(s, release_rows("foo", "1.0"))
        # an armv7l platform wheel settles only armv7l; cp313's build failed; cp311 on
        # aarch64 still waits for its builder
        build(s, "foo", "1.0", ARMV7, files=("foo-1.0-cp311-cp311-linux_armv7l.whl",))
        build(s, "foo", "1.0", CP313, files=(), status="failed", label="pi5")
    with db() as s:
        project, _ = data.load_project(s, "foo")
    builds = json.loads(render.project_json(project))["versions"][0]["builds"]
    assert [(b["target"], b["abi"], b["platform"], b["state"]) for b in builds] == [
        (AARCH64, "cp311", "linux_aarch64", "pending"),
        (ARMV7, "cp311", "linux_armv7l", "built"),
        (CP313, "cp313", "linux_aarch64", "failed")]
    page = render.project_html(project, SiteInfo(""))
    for cells in ("<td><code>cp311</code></td>\n              <td><code>linux_aarch64</code>",
                  "<td><code>linux_armv7l</code> <span class=\"also\">(also armv6l)</span>",
                  "<td><code>cp313</code></td>\n              <td><code>linux_aarch64</code>"):
        assert cells in page


def test_an_armv7_only_image_says_so(db):
    """A target whose image is not declared ARMv6-compatible (a Debian armhf userland) says its
    armv7l wheels are not for a Pi 1 or Zero, rather than "(also armv6l)"."""
    with db() as s, s.begin():
        dispatch.sync_abis(s, [(ARMV7, "bookworm")])
        feed(s, release_rows("foo", "1.0"))
        build(s, "foo", "1.0", ARMV7, files=("foo-1.0-cp311-cp311-linux_armv7l.whl",))
    with db() as s:
        project, _ = data.load_project(s, "foo")
    page = render.project_html(project, SiteInfo(""))
    assert ("<td><code>linux_armv7l</code> <span class=\"also\">(ARMv7: not for Pi 1 or "
            "Zero)</span>") in page
    assert "also armv6l" not in page
    builds = json.loads(render.project_json(project))["versions"][0]["builds"]
    assert [(b["target"], b["armv6"]) for b in builds] == [(ARMV7, False)]
