"""The index's writes into the www tree: atomic, idempotent, never outside the tree."""

import pytest

from piw_services.site.tree import TreeWriter


def test_write_replaces_atomically_and_skips_identical(tmp_path):
    tree = TreeWriter(tmp_path)
    assert tree.write("simple/foo/index.html", "<p>one</p>")
    assert (tmp_path / "simple/foo/index.html").read_text() == "<p>one</p>"
    mtime = (tmp_path / "simple/foo/index.html").stat().st_mtime_ns
    assert not tree.write("simple/foo/index.html", "<p>one</p>")  # unchanged: left alone
    assert (tmp_path / "simple/foo/index.html").stat().st_mtime_ns == mtime
    assert tree.write("simple/foo/index.html", b"<p>two</p>")
    assert (tmp_path / "simple/foo/index.html").read_bytes() == b"<p>two</p>"
    assert [p.name for p in (tmp_path / "simple/foo").iterdir()] == ["index.html"]


def test_remove_cleans_empty_directories_only(tmp_path):
    tree = TreeWriter(tmp_path)
    tree.write("project/foo/index.html", "x")
    tree.write("project/foo/json/index.json", "{}")
    tree.write("simple/foo/index.html", "x")
    (tmp_path / "simple/foo/foo-1.0-py3-none-any.whl").write_bytes(b"wheel")
    tree.remove("project/foo/index.html", "project/foo/json/index.json",
                "simple/foo/index.html", "simple/foo/missing.json")
    assert not (tmp_path / "project").exists()
    assert (tmp_path / "simple/foo/foo-1.0-py3-none-any.whl").exists()


@pytest.mark.parametrize("bad", ["../x", "simple/../../x", "/etc/passwd", ".", ""])
def test_paths_outside_the_tree_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="outside the www tree"):
        TreeWriter(tmp_path / "www").write(bad, "x")


def test_sweep_removes_only_old_temps_of_interrupted_writes(tmp_path):
    """A writer killed between writing its temp file and renaming it leaves the temp behind;
    the sweep removes such temps once they are old, and nothing else."""
    import os

    tree = TreeWriter(tmp_path)
    tree.write("simple/foo/index.html", "x")
    old = [tmp_path / "simple/foo/.index.html.0123456789ab.tmp",
           tmp_path / "simple/.index.json.abcdefabcdef.tmp",
           tmp_path / "stats/.index.html.000000000000.tmp"]
    young = tmp_path / "project/foo/.index.html.ba9876543210.tmp"  # a write in progress
    kept = [tmp_path / "simple/foo/index.html",
            tmp_path / "simple/foo/.index.html.tmp",  # not the temp pattern
            tmp_path / "simple/foo/foo-1.0.tmp",
            tmp_path / ".uploads/.index.html.0123456789ab.tmp"]  # file_manager's to sweep
    for path in old + [young] + kept[1:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a page")
    for path in old + kept:
        os.utime(path, (0, 1000))
    assert tree.sweep_temps(60, now=2000) == 3
    assert not any(p.exists() for p in old)
    assert young.exists() and all(p.exists() for p in kept)
    assert tree.sweep_temps(60, now=2000) == 0
