"""The index's writes into the www tree: atomic, idempotent, never outside the tree."""

import pytest

from piw_services.index.tree import Tree


def test_write_replaces_atomically_and_skips_identical(tmp_path):
    tree = Tree(tmp_path)
    assert tree.write("simple/foo/index.html", "<p>one</p>")
    assert (tmp_path / "simple/foo/index.html").read_text() == "<p>one</p>"
    mtime = (tmp_path / "simple/foo/index.html").stat().st_mtime_ns
    assert not tree.write("simple/foo/index.html", "<p>one</p>")  # unchanged: left alone
    assert (tmp_path / "simple/foo/index.html").stat().st_mtime_ns == mtime
    assert tree.write("simple/foo/index.html", b"<p>two</p>")
    assert (tmp_path / "simple/foo/index.html").read_bytes() == b"<p>two</p>"
    assert [p.name for p in (tmp_path / "simple/foo").iterdir()] == ["index.html"]


def test_remove_cleans_empty_directories_only(tmp_path):
    tree = Tree(tmp_path)
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
        Tree(tmp_path / "www").write(bad, "x")
