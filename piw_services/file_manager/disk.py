"""The wheels on disk: uploads being assembled, and the wheels served under <WWW>/simple.

Layout (everything below one root, one filesystem, so every move is a ``rename``)::

    <WWW>/.uploads/<upload_id>.part       chunks pwritten at their offsets (a sparse file)
    <WWW>/.uploads/<upload_id>.corrupt    offsets of chunks that did not match their sha256
    <WWW>/.uploads/.tmp-*                 temp files and links before their rename into place
    <WWW>/simple/<package>/<wheel>        published wheels (package in PEP 503 form)
    <WWW>/simple/<package>/<wheel>.metadata   their METADATA (PEP 658)

Readers (pip through nginx or the web service) must never see a half-written file, so every
file or link appears by ``rename`` of a complete, fsynced temp. Chunks may arrive in any order
and be written by any number of file_manager processes sharing the tree: a chunk only ever
touches its own byte range. Nothing here knows about nameko or the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from builders import protocol

UPLOADS = ".uploads"
SIMPLE = "simple"
PART = ".part"
CORRUPT = ".corrupt"
TEMP_PREFIX = ".tmp-"
METADATA_SUFFIX = ".metadata"
#: Files are hashed in pieces of this size: memory stays bounded whatever the wheel's size.
PIECE = 1024 * 1024
#: A METADATA larger than this is refused (the builder's inspection uses the same bound).
MAX_METADATA_BYTES = 16 * 1024 * 1024
ARMV7 = "linux_armv7l"
ARMV6 = "linux_armv6l"
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}\Z")  # \Z: "$" passes a trailing newline


class UploadRefused(Exception):
    """A refusal: the text says what is wrong; ``retry`` whether uploading again may help."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Verdict:
    """What an upload looks like now. ``final`` problems cannot fix themselves by waiting
    (a corrupt chunk, too many bytes); the others may be chunks still being written."""

    ok: bool
    problem: str | None = None
    final: bool = False


@dataclass(frozen=True)
class Installed:
    """A wheel in place: ``path`` is relative to the root; ``link`` the armv6l name serving
    the same file, if any."""

    filename: str
    path: str
    metadata_sha256: str
    link: str | None


def armv6l_name(filename: str) -> str | None:
    """The name an armv7l wheel is also served under for armv6l, or None (docs/builders.md,
    Build targets).

    Only the platform part of the name is changed; a wheel already tagged for armv6l (or for no
    armv7l platform) gets no link.
    """
    stem, ext = filename[:-4], filename[-4:]
    if ext != ".whl":
        return None
    head, _, platform = stem.rpartition("-")
    platforms = platform.split(".")
    if ARMV7 not in platforms or ARMV6 in platforms:
        return None
    return f"{head}-{'.'.join(ARMV6 if p == ARMV7 else p for p in platforms)}{ext}"


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB pieces.

    ``time.sleep(0)`` between pieces lets other green threads (AMQP heartbeats) run when the
    process is monkey-patched by eventlet; elsewhere it costs nothing.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while piece := fh.read(PIECE):
            digest.update(piece)
            size += len(piece)
            time.sleep(0)
    return size, digest.hexdigest()


def read_metadata(path: Path, filename: str) -> bytes:
    """The bytes of the wheel's ``*.dist-info/METADATA`` (exactly one), read with a bound.

    A file that is not a zip or has no single METADATA is refused for good: its hash matched
    what the builder announced, so uploading it again cannot help.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            candidates = [
                info for info in zf.infolist()
                if (p := PurePosixPath(info.filename)).name == "METADATA"
                and len(p.parts) == 2 and p.parts[0].endswith(".dist-info")
            ]
            if len(candidates) != 1:
                raise UploadRefused(f"{filename}: expected one *.dist-info/METADATA, found "
                                 f"{len(candidates)}")
            info = candidates[0]
            if info.file_size > MAX_METADATA_BYTES:
                raise UploadRefused(f"{filename}: METADATA is {info.file_size} bytes; refusing it")
            with zf.open(info) as fh:
                data = fh.read(MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise UploadRefused(f"{filename} is not a readable wheel (zip): {exc}") from None
    except NotImplementedError as exc:  # an unsupported compression method
        raise UploadRefused(f"{filename}: {exc}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise UploadRefused(f"{filename}: METADATA is larger than its header says; refusing it")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


class WheelDisk:
    """The uploads and wheels of a www tree. Every path it builds is checked to stay inside it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.uploads = self.root / UPLOADS
        self.simple = self.root / SIMPLE
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.simple.mkdir(parents=True, exist_ok=True)
        # temps are renamed from .uploads into simple/: that is atomic only on one filesystem
        if self.uploads.stat().st_dev != self.simple.stat().st_dev:
            raise RuntimeError(f"{self.uploads} and {self.simple} must be on one filesystem")

    # -- paths -----------------------------------------------------------------------------
    def _inside(self, parent: Path, name: str, base: Path) -> Path:
        """*parent*/*name*, refused unless *name* is one plain component and *parent*
        resolves to *base* itself (so no symlinked or dotted directory leads outside)."""
        if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name):
            raise UploadRefused(f"refusing path component {name!r}")
        if parent.resolve() != base:
            raise UploadRefused(f"refusing a path outside {base}: {parent}")
        return parent / name

    def package_dir(self, package: str) -> Path:
        """<WWW>/simple/<canonical package>, checked to lie directly under simple/."""
        canon = canonicalize_name(package)
        path = self._inside(self.simple, canon, self.simple)
        if path.resolve() != self.simple / canon:  # e.g. simple/<pkg> is a symlink elsewhere
            raise UploadRefused(f"refusing package directory {path}: "
                                f"it leads outside {self.simple}")
        return path

    def wheel_path(self, package: str, filename: str) -> Path:
        """Where *filename* of *package* is served; the name must be a valid wheel filename."""
        check_filename(filename)
        directory = self.package_dir(package)
        return self._inside(directory, filename, self.simple / canonicalize_name(package))

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def part_path(self, upload_id: str) -> Path:
        return self._upload_file(upload_id, PART)

    def corrupt_path(self, upload_id: str) -> Path:
        return self._upload_file(upload_id, CORRUPT)

    def _upload_file(self, upload_id: str, suffix: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise UploadRefused(f"not an upload id: {upload_id!r:.80}")
        return self._inside(self.uploads, upload_id + suffix, self.uploads)

    def _temp(self) -> Path:
        return self.uploads / f"{TEMP_PREFIX}{secrets.token_hex(8)}"

    # -- uploads ---------------------------------------------------------------------------
    def write_chunk(self, upload_id: str, offset: int, data: bytes, sha256: str) -> bool:
        """Write one chunk at its offset; False (and the upload marked corrupt) when its bytes
        do not hash to *sha256*. Writing the same chunk twice is harmless."""
        part = self.part_path(upload_id)
        if hashlib.sha256(data).hexdigest() != sha256:
            self.mark_corrupt(upload_id, offset)
            return False
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
        finally:
            os.close(fd)
        return True

    def mark_corrupt(self, upload_id: str, offset: int) -> None:
        """Remember a corrupt chunk (O_APPEND: safe from several processes at once)."""
        fd = os.open(self.corrupt_path(upload_id),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{offset}\n".encode())
        finally:
            os.close(fd)

    def corrupt_offsets(self, upload_id: str) -> list[int]:
        try:
            text = self.corrupt_path(upload_id).read_text()
        except FileNotFoundError:
            return []
        return sorted({int(line) for line in text.split() if line.isdigit()})

    def verify(self, upload_id: str, size: int, sha256: str) -> Verdict:
        """Whether the upload is complete: exactly *size* bytes hashing to *sha256*."""
        offsets = self.corrupt_offsets(upload_id)
        if offsets:
            where = ", ".join(str(o) for o in offsets[:5])
            return Verdict(False, f"upload {upload_id}: chunk at offset {where} arrived "
                                  f"corrupt (sha256 mismatch); upload the file again", final=True)
        part = self.part_path(upload_id)
        try:
            have = part.stat().st_size
        except FileNotFoundError:
            return Verdict(False, f"upload {upload_id}: no chunks received (or expired)")
        if have < size:
            return Verdict(False, f"upload {upload_id}: {have} of {size} bytes received")
        if have > size:
            return Verdict(False, f"upload {upload_id}: {have} bytes received, more than the "
                                  f"{size} announced", final=True)
        _, digest = hash_file(part)
        if digest != sha256:
            return Verdict(False, f"upload {upload_id}: the {size} bytes received hash to "
                                  f"{digest}, not the announced {sha256}")
        return Verdict(True)

    def discard(self, upload_id: str) -> None:
        """Forget an upload (its part and corrupt marker); missing files are fine."""
        _unlink(self.part_path(upload_id))
        _unlink(self.corrupt_path(upload_id))

    def uploads_in_progress(self) -> tuple[int, int]:
        """(count, bytes) of part files."""
        count = size = 0
        with os.scandir(self.uploads) as entries:
            for entry in entries:
                if entry.name.endswith(PART):
                    try:
                        size += entry.stat().st_size
                    except FileNotFoundError:
                        continue
                    count += 1
        return count, size

    def sweep(self, max_age: float, now: float | None = None) -> int:
        """Remove parts, corrupt markers and temps untouched for *max_age* seconds (their
        builder or process died); returns how many files were removed."""
        limit = (time.time() if now is None else now) - max_age
        removed = 0
        with os.scandir(self.uploads) as entries:
            for entry in entries:
                name = entry.name
                if not (name.endswith((PART, CORRUPT)) or name.startswith(TEMP_PREFIX)):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < limit:
                        removed += _unlink(Path(entry.path))
                except FileNotFoundError:
                    continue
        return removed

    # -- publishing ------------------------------------------------------------------------
    def install(self, upload_id: str, package: str, filename: str,
                link: str | None = None) -> Installed:
        """Move a verified upload into place: METADATA first, then the wheel, then *link* (the
        armv6l name, see :func:`armv6l_name`) and its metadata as relative symlinks; each by
        rename, so the wheel is never served without its metadata, nor a link without both."""
        dest = self.wheel_path(package, filename)
        part = self.part_path(upload_id)
        if not part.exists():
            raise UploadRefused(f"upload {upload_id}: no data to install", retry=True)
        metadata = read_metadata(part, filename)
        _fsync_file(part)
        installed = self._with_package_dir(
            dest.parent, lambda: self._install(part, dest, metadata, link))
        _unlink(self.corrupt_path(upload_id))
        return installed

    def repair(self, package: str, filename: str, link: str | None = None) -> Installed | None:
        """Rewrite the metadata and link of a wheel already in place (a repeated commit after
        a crash between the steps of :meth:`install`); None when the wheel is not there."""
        dest = self.wheel_path(package, filename)
        if not dest.is_file() or dest.is_symlink():
            return None
        metadata = read_metadata(dest, filename)
        return self._with_package_dir(
            dest.parent, lambda: self._install(None, dest, metadata, link))

    def _with_package_dir(self, directory: Path, action: Callable[[], Installed]) -> Installed:
        """Run *action*, re-creating the package directory if a concurrent removal of the
        package's last file took it away in between."""
        for attempt in range(3):
            directory.mkdir(exist_ok=True)
            try:
                return action()
            except FileNotFoundError:
                if attempt == 2 or directory.exists():
                    raise
        raise AssertionError("unreachable")

    def _install(self, part: Path | None, dest: Path, metadata: bytes,
                 link: str | None) -> Installed:
        meta_path = dest.with_name(dest.name + METADATA_SUFFIX)
        self.write_atomic(meta_path, metadata)
        if part is not None:
            os.replace(part, dest)
        if link is not None:
            link_path = self._inside(dest.parent, check_filename(link), dest.parent)
            # the link's metadata first: a served link always has its metadata
            self.link_atomic(link_path.with_name(link + METADATA_SUFFIX), meta_path.name)
            self.link_atomic(link_path, dest.name)
        _fsync_dir(dest.parent)
        return Installed(dest.name, self.relative(dest), hashlib.sha256(metadata).hexdigest(),
                         link)

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write *path* so that readers see the old file or the whole new one, never a part."""
        tmp = self._temp()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def link_atomic(self, path: Path, target: str) -> None:
        """Make *path* a symlink to *target* (a name in the same directory: relative, so the
        tree can move), replacing whatever was there in one rename."""
        if "/" in target:
            raise UploadRefused(f"refusing a link target outside its directory: {target!r}")
        tmp = self._temp()
        os.symlink(target, tmp)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def is_published(self, package: str, filename: str) -> bool:
        return self.wheel_path(package, filename).exists()

    # -- removal ---------------------------------------------------------------------------
    def delete(self, package: str, filenames: list[str]) -> list[str]:
        """Delete wheels (or links) with their metadata, then the package directory if that
        left it empty. An armv7l wheel's armv6l link goes with it even when not named (a
        dangling link helps nobody); a real armv6l wheel by that name is left alone. Missing
        files are fine: a removal may run twice. Returns the paths removed (relative)."""
        directory = self.package_dir(package)
        base = self.simple / canonicalize_name(package)
        names = dict.fromkeys(filenames)
        for filename in filenames:
            link = armv6l_name(filename)
            if link is not None and link not in names:
                try:
                    if os.readlink(self._inside(directory, link, base)) == filename:
                        names[link] = None
                except OSError:  # missing, or not a link
                    pass
        paths = [self._inside(directory, check_filename(name), base) for name in names]
        removed = []
        # links before what they point to, each wheel before its metadata: the reverse of
        # install, so nothing served ever points at a file already gone
        for path in sorted(paths, key=lambda p: not p.is_symlink()):
            for victim in (path, path.with_name(path.name + METADATA_SUFFIX)):
                if _unlink(victim):
                    removed.append(self.relative(victim))
        if removed:
            _fsync_dir(directory)
        self.remove_empty_dir(package)
        return removed

    def remove_empty_dir(self, package: str) -> bool:
        try:
            self.package_dir(package).rmdir()
        except OSError:  # not empty, or gone already
            return False
        return True


def check_filename(filename: str) -> str:
    """A bare wheel filename, checked here too so the disk code never trusts its caller with a
    path (the protocol's rules: builders.protocol.check_wheel_filename)."""
    try:
        return protocol.check_wheel_filename(filename)
    except protocol.ProtocolError as exc:
        raise UploadRefused(str(exc)) from None
