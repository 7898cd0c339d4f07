"""Downloading and unpacking benchmark archives: resumable, verified, never half-done.

Three layers, each usable alone:

- :func:`fetch` streams a URL (``http(s)://`` or ``file://``) to ``<dest>.part``, resuming
  an interrupted download with an HTTP ``Range`` request (or restarting cleanly when the
  server ignores it), checks the size and SHA-256 when known, and only then renames the
  file to ``dest``. A file at ``dest`` is therefore always complete.
- :func:`extract` unpacks a ``.zip`` / ``.tar(.gz)`` into a temporary folder beside the
  destination, moves the entries into place, and writes a completion ``marker`` last. While
  entries are being moved an ``<marker>.inprogress`` flag exists, so an interrupted
  extraction is recognised (:func:`extraction_interrupted`) and redone, never taken as a
  complete tree.
- :func:`ensure_benchmark` is what a data module's ``prepare_data`` calls: use the tree if
  it is there, else download (``download=True``) or explain exactly which archive to put
  where (``download=False``, or when the download fails). :func:`check_benchmark` reaches
  the same verdict without downloading, in seconds (a probe of the server), before any work.

URLs: the official one of each :class:`ArchiveSpec`, overridden by the environment
variable it names (e.g. ``SOSC_SPAIR_URL``), overridden by an explicit ``url`` argument
(a data module's ``url=``).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sosc.checksum import sha256sum
from sosc.errors import DatasetError
from sosc.network import PROBE_SECONDS, unreachable

log = logging.getLogger(__name__)

#: Folder-level junk some archives carry (macOS resource forks); never extracted.
SKIPPED_MEMBERS = ("__MACOSX/", ".DS_Store")


class DownloadError(DatasetError):
    """A file could not be downloaded (network, HTTP status, size or checksum)."""


@dataclass(frozen=True)
class ArchiveSpec:
    """Where a benchmark's archive comes from and what it unpacks to.

    Attributes:
        name: benchmark name for messages (``"SPair-71k"``).
        url: the official download URL.
        env: environment variable that overrides ``url`` (a mirror).
        filename: the archive's file name (``"SPair-71k.tar.gz"``).
        folder: the folder the archive unpacks to (``"SPair-71k"``).
        sha256: known checksum of the archive, or None (not published).
        size: known size in bytes, or None.
    """

    name: str
    url: str
    env: str
    filename: str
    folder: str
    sha256: str | None = None
    size: int | None = None

    def marker(self, into: Path) -> Path:
        """The completion marker written after ``filename`` was extracted into ``into``."""
        return Path(into) / f".{self.filename}.complete"


def resolve_url(spec: ArchiveSpec, url: str | None = None) -> str:
    """The URL to download ``spec`` from: ``url`` if given, else ``$<spec.env>``, else the official one."""
    if url:
        return url
    return os.environ.get(spec.env) or spec.url


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _verify(path: Path, url: str, dest: Path, sha256: str | None, size: int | None) -> str | None:
    """None when ``path`` has the expected size and checksum, else why not."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{dest} from {url} has {actual} bytes, expected {size}"
    if sha256 is not None:
        got = sha256sum(path)
        if got.lower() != sha256.lower():
            return f"checksum mismatch for {dest} from {url}: sha256 {got}, expected {sha256}"
    return None


class _Progress:
    """A tqdm bar on stderr when asked for and available; a no-op otherwise."""

    def __init__(self, enabled: bool, total: int | None, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc, leave=False)
            except ImportError:  # pragma: no cover - tqdm is a dependency
                self.bar = None

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open(url: str, offset: int, timeout: float) -> tuple[IO[bytes], int, int | None]:
    """Open ``url`` from byte ``offset``: ``(stream, start, total)``.

    ``start`` is where the stream really begins (0 when the server ignored the Range
    request); ``total`` the full size when the server said it.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        try:
            fh = open(path, "rb")  # closed by the caller
        except OSError as err:
            raise DownloadError(f"cannot read {url}: {err}") from err
        total = path.stat().st_size
        start = min(offset, total)
        fh.seek(start)
        return fh, start, total
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {url!r}: only http://, https:// and file:// URLs are supported")
    headers = {"User-Agent": "sosc-downloader", "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset > 0:
            # The partial file already holds everything (or more): the caller verifies or restarts.
            err.close()
            total = _total_from_content_range(err.headers.get("Content-Range"))
            return _Empty(), offset, total
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot download {url}: {reason}") from err
    if offset > 0 and resp.status == 206:
        content_range = resp.headers.get("Content-Range", "")
        start = _start_from_content_range(content_range)
        if start != offset:
            resp.close()
            return _open(url, 0, timeout)
        return resp, offset, _total_from_content_range(content_range)
    length = resp.headers.get("Content-Length")
    return resp, 0, int(length) if length and length.isdigit() else None


class _Empty:
    """A stream with nothing left to read."""

    def read(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _start_from_content_range(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def _total_from_content_range(value: str | None) -> int | None:
    try:
        total = value.split("/")[-1] if value else "*"
        return int(total) if total.isdigit() else None
    except (AttributeError, ValueError):
        return None


def _stream_once(url: str, part: Path, timeout: float, chunk: int, progress: bool) -> int | None:
    """Append the rest of ``url`` to ``part`` (resuming from its size); returns the full size if known."""
    offset = part.stat().st_size if part.exists() else 0
    stream, start, total = _open(url, offset, timeout)
    if start == 0 and offset > 0:
        log.info("%s: the server does not resume downloads; restarting from the beginning", url)
    bar = _Progress(progress, total, start, Path(urllib.parse.urlparse(url).path).name or url)
    try:
        with open(part, "r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate(start)
            while True:
                try:
                    block = stream.read(chunk)
                except (OSError, ValueError, http.client.HTTPException) as err:  # dropped connection
                    raise DownloadError(f"download of {url} interrupted after {out.tell()} bytes: {err!r}") from err
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    finally:
        bar.close()
        stream.close()
    return total


def fetch(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` atomically, resuming and verifying.

    Bytes go to ``<dest>.part``; an existing ``.part`` (an earlier, interrupted run) is
    resumed with an HTTP ``Range`` request, or restarted from zero when the server ignores
    ``Range``. When the stream breaks, the download is resumed up to ``retries`` times.
    The finished file is checked against ``size`` (or the size the server announced) and
    ``sha256`` when given; only then is it renamed to ``dest``. A resumed file that fails
    the checksum is downloaded once more from zero before giving up.

    An existing ``dest`` that passes the checks is kept without any network access; one
    that fails them is downloaded again.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: the final file path (its folder is created).
        sha256: expected hex SHA-256, or None.
        size: expected size in bytes, or None.
        progress: show a progress bar on stderr.
        retries: resume attempts after a broken stream.
        timeout: socket timeout in seconds.
        chunk_size: bytes per read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unreachable URL, HTTP error, or a size/checksum mismatch (the message
            names the file, the URL and both values; the bad ``.part`` file is removed so the
            next run starts clean).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _existing_is_good(dest, url, sha256, size):
        return dest
    part = _part_path(dest)
    attempts = _Attempts(retries)
    while True:
        expected, resumed = _download_part(
            url, part, dest, size, attempts, timeout=timeout, chunk_size=chunk_size, progress=progress
        )
        if _verify_part(part, url, dest, sha256, expected, resumed=resumed, attempts=attempts):
            break
    os.replace(part, dest)
    return dest


def _existing_is_good(dest: Path, url: str, sha256: str | None, size: int | None) -> bool:
    """Whether a file already at ``dest`` passes the size and checksum checks (then it is kept
    and nothing is downloaded); one that fails them is removed with a warning."""
    if not dest.exists():
        return False
    problem = _verify(dest, url, dest, sha256, size)
    if problem is None:
        return True
    log.warning("%s; downloading it again", problem)
    dest.unlink()
    return False


@dataclass
class _Attempts:
    """Resume bookkeeping of one :func:`fetch`.

    Attributes:
        retries: failed attempts allowed (a broken stream and a short file both count).
        failed: failed attempts so far; the count is kept across a restart from zero.
        restarted: the download was already restarted from zero after a failed check
            (it is restarted at most once).
    """

    retries: int
    failed: int = 0
    restarted: bool = False

    def fail(self) -> bool:
        """Count one failed attempt; True while another one is allowed."""
        self.failed += 1
        return self.failed <= self.retries

    def backoff(self) -> float:
        """Seconds to wait before the next attempt after a broken stream (0.2 s per failure, at most 2 s)."""
        return min(0.2 * self.failed, 2.0)


def _download_part(
    url: str,
    part: Path,
    dest: Path,
    size: int | None,
    attempts: _Attempts,
    *,
    timeout: float,
    chunk_size: int,
    progress: bool,
) -> tuple[int | None, bool]:
    """Stream ``url`` into ``part`` until it holds the whole file, resuming after a broken
    stream or a short file while ``attempts`` allows.

    Returns:
        ``(expected, resumed)``: the expected full size in bytes (``size``, else what the
        server announced, else None), and whether the last attempt continued a non-empty
        ``part`` (so that a checksum failure is worth one restart from zero).

    Raises:
        DownloadError: the URL cannot be opened, or the stream keeps breaking or stopping
            short after ``attempts.retries`` resumed attempts (the ``.part`` file is kept
            so that a rerun resumes it).
    """
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            total = _stream_once(url, part, timeout, chunk_size, progress)
        except DownloadError:
            if not attempts.fail() or not part.exists():
                raise
            time.sleep(attempts.backoff())
            continue
        got = part.stat().st_size
        expected = size if size is not None else total
        if expected is None or got >= expected:
            return expected, resumed
        if not attempts.fail():
            raise DownloadError(
                f"download of {url} to {dest} stopped at {got} of {expected} bytes after {attempts.retries} "
                f"resumed attempts; rerun to resume from {part}"
            )


def _verify_part(
    part: Path,
    url: str,
    dest: Path,
    sha256: str | None,
    expected: int | None,
    *,
    resumed: bool,
    attempts: _Attempts,
) -> bool:
    """Check a complete ``part`` against ``expected`` bytes and ``sha256``.

    Returns True when it passes. A file that fails is removed; if it was resumed (its first
    bytes may come from a different or damaged earlier download) and no restart happened
    yet, False asks the caller to download it again from zero.

    Raises:
        DownloadError: the check failed on a fresh download (or after the one restart),
            naming the file, the URL and both values.
    """
    problem = _verify(part, url, dest, sha256, expected)
    if problem is None:
        return True
    part.unlink()
    if resumed and not attempts.restarted:
        log.warning("%s after resuming; downloading again from the beginning", problem)
        attempts.restarted = True
        return False
    raise DownloadError(f"{problem}; removed the bad download, check the URL or the expected checksum")


# -- extraction ----------------------------------------------------------------------------------
def _inprogress(marker: Path) -> Path:
    return marker.with_name(marker.name + ".inprogress")


def extraction_interrupted(marker: Path) -> bool:
    """True when an :func:`extract` writing ``marker`` was interrupted while moving files into place."""
    return _inprogress(Path(marker)).exists()


def _safe_members_zip(archive: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        name = info.filename
        if any(skip in name for skip in SKIPPED_MEMBERS):
            continue
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DatasetError(f"{archive}: member {name!r} would be written outside the target folder; refusing")
        members.append(info)
    return members


def _unpack(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(into, members=_safe_members_zip(archive, zf))
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if not any(s in m.name for s in SKIPPED_MEMBERS)]
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(into, members=members, filter="data")
                else:  # Python without extraction filters: refuse links and paths leaving ``into``
                    for m in members:
                        parts = Path(m.name).parts
                        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                            raise DatasetError(f"{archive}: member {m.name!r} is a link or leaves the target folder; refusing")
                    tf.extractall(into, members=members)
        else:
            raise DatasetError(f"{archive}: unknown archive type; expected .zip, .tar, .tar.gz, .tgz")
    except getattr(tarfile, "FilterError", ()) as err:
        raise DatasetError(f"{archive}: {err}; refusing to extract a member outside the target folder") from err
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(
            f"{archive} cannot be unpacked ({err}): the file is damaged; delete it and download it again"
        ) from err


def _move_into(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``: one rename when ``dst`` is absent, else merge file by file
    (archive files replace files of the same path; other files already there are kept)."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in list(src.iterdir()):
            _move_into(child, dst / child.name)
        return
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


def extract(archive: str | Path, into: str | Path, marker: str | Path) -> Path:
    """Unpack ``archive`` into the folder ``into``; ``marker`` is written when complete.

    Steps: (1) unpack into a fresh temporary folder inside ``into`` (leftovers of an earlier
    interrupted run are removed first); (2) create ``<marker>.inprogress``; (3) move each
    top-level entry into ``into`` (a rename, or a file-by-file merge into an existing folder);
    (4) write ``marker``; (5) remove the in-progress flag. A run interrupted anywhere leaves
    no marker, so the next call redoes the extraction; :func:`extraction_interrupted` tells
    callers that a tree under ``into`` may be incomplete.

    Nothing happens when ``marker`` already exists. ``__MACOSX/`` and ``.DS_Store`` entries
    are skipped; members that would land outside ``into`` are refused.

    Returns:
        ``into``.
    """
    archive, into, marker = Path(archive), Path(into), Path(marker)
    if marker.exists():
        return into
    if not archive.is_file():
        raise DatasetError(f"cannot extract {archive}: the file does not exist")
    into.mkdir(parents=True, exist_ok=True)
    prefix = ("" if marker.name.startswith(".") else ".") + marker.name + ".tmp-"
    for stale in into.glob(prefix + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=into))
    try:
        _unpack(archive, tmp)
        flag = _inprogress(marker)
        flag.write_text(str(archive))
        for entry in sorted(tmp.iterdir()):
            _move_into(entry, into / entry.name)
        marker.write_text(json.dumps({"archive": archive.name, "extracted": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        flag.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return into


# -- what a data module's prepare_data calls ----------------------------------------------------
def manual_instructions(spec: ArchiveSpec, root: Path, extra: str = "") -> str:
    """The sentence that says which file to put where (used in every 'not found' message)."""
    root = Path(root)
    text = (
        f"To install {spec.name} by hand: download {spec.filename} (official: {spec.url}; or a mirror) "
        f"and extract it into {root}, so that {root / spec.folder} exists (or pass the extracted "
        f"folder itself as data.root). To download from a mirror instead, set data.url or the "
        f"environment variable {spec.env}."
    )
    return text + (" " + extra if extra else "")


def _listing(folder: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _missing_reason(spec: ArchiveSpec, root: Path, find: Callable[[Path], object]) -> str | None:
    """None when ``spec``'s tree is under ``root`` (``find`` returns), else why not: an
    interrupted extraction, or ``find``'s :class:`DatasetError` naming the paths searched."""
    marker = spec.marker(root)
    if extraction_interrupted(marker):
        return (
            f"an earlier extraction of {spec.filename} into {root} was interrupted, so the tree there may be "
            f"incomplete: rerun with download enabled to redo it, or extract {spec.filename} into {root} by "
            f"hand and delete {_inprogress(marker)}"
        )
    try:
        find(root)
    except DatasetError as err:
        return str(err)
    return None


def _not_downloaded(spec: ArchiveSpec, root: Path, reason: str, extra_help: str) -> DatasetError:
    """The error of a missing tree with ``download=False``: which archive to put where."""
    how = "" if spec.filename in reason else " " + manual_instructions(spec, root, extra_help)
    return DatasetError(f"{spec.name} not found and download=False, so nothing was downloaded: {reason}{how}")


def _cannot_download(spec: ArchiveSpec, root: Path, why: str, extra_help: str) -> DatasetError:
    """The error of a missing tree whose download failed: which archive to put where."""
    return DatasetError(f"{spec.name} is not under {root} and could not be downloaded: {why}. "
                        + manual_instructions(spec, root, extra_help))


def check_benchmark(
    spec: ArchiveSpec,
    root: str | Path,
    find: Callable[[Path], object],
    *,
    download: bool = True,
    url: str | None = None,
    extra_help: str = "",
    timeout: float = PROBE_SECONDS,
) -> None:
    """What :func:`ensure_benchmark` would conclude without downloading, in at most ``timeout``
    seconds: return when ``spec``'s tree is under ``root``, or when it is not but ``download``
    is on and the archive's server answers (:func:`sosc.network.unreachable`); else raise the
    :class:`DatasetError` that says which archive to put where. Writes nothing.

    ``sosc`` calls it (through the data module's ``check_data``) before anything else is
    built, so that missing data is reported before pretrained weights are fetched and an
    unreachable server in seconds, not after a download's retries.
    """
    root = Path(root).expanduser()
    reason = _missing_reason(spec, root, find)
    if reason is None:
        return
    if not download:
        raise _not_downloaded(spec, root, reason, extra_help)
    source = resolve_url(spec, url)
    problem = unreachable(source, timeout)
    if problem is not None:
        raise _cannot_download(spec, root, f"{source}: {problem}", extra_help)


def ensure_benchmark(
    spec: ArchiveSpec,
    root: str | Path,
    find: Callable[[Path], object],
    *,
    download: bool = True,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    extra_help: str = "",
) -> None:
    """Make sure ``spec``'s tree is under ``root``: use it, download it, or explain.

    ``find(root)`` must return when the tree is there and raise :class:`DatasetError`
    (naming the paths it searched) when it is not. A tree whose extraction was interrupted
    (see :func:`extraction_interrupted`) counts as absent.

    With ``download=False`` nothing is ever downloaded: a missing tree raises a
    :class:`DatasetError` that says which archive to put where. With ``download=True`` the
    archive is fetched to ``root/<spec.filename>`` (resumable, verified with ``sha256`` or
    ``spec.sha256``), extracted into ``root`` with a completion marker, and removed after a
    successful extraction when this call downloaded it (an archive you placed there yourself
    is extracted and kept). A failed download raises the same instructions.
    :func:`check_benchmark` tells beforehand, in seconds, whether this would fail.
    """
    root = Path(root).expanduser()
    marker = spec.marker(root)
    reason = _missing_reason(spec, root, find)
    if reason is None:
        return
    if not download:
        raise _not_downloaded(spec, root, reason, extra_help)
    marker.unlink(missing_ok=True)
    archive = root / spec.filename
    placed = archive.exists()
    source = resolve_url(spec, url)
    log.info("downloading %s from %s to %s", spec.name, source, archive)
    try:
        fetch(source, archive, sha256=sha256 or spec.sha256, size=spec.size, progress=progress)
    except DownloadError as err:
        raise _cannot_download(spec, root, str(err), extra_help) from err
    extract(archive, root, marker)
    if not placed:
        archive.unlink(missing_ok=True)
    try:
        find(root)
    except DatasetError as err:
        raise DatasetError(
            f"{spec.filename} from {source} was extracted into {root} (now holding: {_listing(root)}), "
            f"but {spec.name} is still not found: {err}. The archive may not be the one expected; "
            + manual_instructions(spec, root, extra_help)
        ) from err
