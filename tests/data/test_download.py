"""Downloads and extraction: resume, restart, checksums, markers, interrupted extraction.

Everything runs against a loopback HTTP server (127.0.0.1, a thread) or file:// URLs.
"""

import hashlib
import io
import tarfile
import time
import zipfile

import pytest

from sosc.data import download as dl
from sosc.data.download import (
    ArchiveSpec,
    DownloadError,
    check_benchmark,
    ensure_benchmark,
    extract,
    extraction_interrupted,
    fetch,
    resolve_url,
)
from sosc.errors import DatasetError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _zip_bytes(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class TestFetch:
    def test_downloads_and_verifies(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, size=len(PAYLOAD), progress=False)
        assert dest.read_bytes() == PAYLOAD
        assert not (tmp_path / "a.bin.part").exists()

    def test_existing_verified_file_is_not_downloaded_again(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        (tmp_path / "a.bin").write_bytes(PAYLOAD)
        fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert loopback_server.requests == []

    def test_checksum_mismatch_names_file_and_both_hashes(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        wrong = "0" * 64
        with pytest.raises(DownloadError) as err:
            fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=wrong, progress=False)
        msg = str(err.value)
        assert str(tmp_path / "a.bin") in msg and SHA in msg and wrong in msg
        assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()

    def test_partial_file_is_resumed_with_range(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:30000])
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == PAYLOAD
        assert loopback_server.requests == [("/a.bin", "bytes=30000-")]

    def test_server_ignoring_range_restarts_cleanly(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        loopback_server.ignore_range = True
        (tmp_path / "a.bin.part").write_bytes(b"x" * 500)
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == PAYLOAD

    def test_corrupt_partial_file_is_redownloaded_from_zero(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        (tmp_path / "a.bin.part").write_bytes(b"\xff" * 1000)  # wrong bytes, resumed, then caught by the checksum
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == PAYLOAD
        assert [r for _, r in loopback_server.requests] == ["bytes=1000-", None]

    def test_broken_connection_is_resumed(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        loopback_server.drop_after, loopback_server.drop_times = 10000, 2
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == PAYLOAD
        assert loopback_server.requests[1:] == [("/a.bin", "bytes=10000-"), ("/a.bin", "bytes=20000-")]

    def test_complete_partial_file_answered_416_is_kept(self, loopback_server, tmp_path):
        loopback_server.files["/a.bin"] = PAYLOAD
        (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
        dest = fetch(loopback_server.url("/a.bin"), tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == PAYLOAD

    def test_http_error_and_unreachable_host(self, loopback_server, tmp_path):
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(loopback_server.url("/missing.bin"), tmp_path / "m.bin", progress=False)
        with pytest.raises(DownloadError, match="cannot download"):
            fetch("http://127.0.0.1:9/none.bin", tmp_path / "n.bin", progress=False, timeout=2)

    def test_file_url_with_resume(self, tmp_path):
        src = tmp_path / "src.bin"
        src.write_bytes(PAYLOAD)
        (tmp_path / "out.bin.part").write_bytes(PAYLOAD[:777])
        dest = fetch(src.as_uri(), tmp_path / "out.bin", sha256=SHA, size=len(PAYLOAD), progress=False)
        assert dest.read_bytes() == PAYLOAD

    def test_size_mismatch(self, tmp_path):
        src = tmp_path / "src.bin"
        src.write_bytes(PAYLOAD)
        with pytest.raises(DownloadError, match="expected 5"):
            fetch(src.as_uri(), tmp_path / "out.bin", size=5, progress=False)


class TestExtract:
    def test_zip_into_place_with_marker_last(self, tmp_path):
        archive = tmp_path / "A.zip"
        archive.write_bytes(_zip_bytes({"A/x.txt": b"1", "A/sub/y.txt": b"2", "__MACOSX/A/._x.txt": b"junk"}))
        marker = tmp_path / "data" / ".A.zip.complete"
        extract(archive, tmp_path / "data", marker)
        assert (tmp_path / "data/A/sub/y.txt").read_bytes() == b"2"
        assert marker.exists() and not extraction_interrupted(marker)
        assert not (tmp_path / "data/__MACOSX").exists()
        assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".") and "tmp" in p.name] == []

    def test_tar_gz(self, tmp_path):
        archive = tmp_path / "B.tar.gz"
        archive.write_bytes(_tar_bytes({"B/x.txt": b"1"}))
        extract(archive, tmp_path / "out", tmp_path / "out" / ".done")
        assert (tmp_path / "out/B/x.txt").read_bytes() == b"1"

    def test_marker_means_done(self, tmp_path):
        marker = tmp_path / ".done"
        marker.write_text("{}")
        extract(tmp_path / "absent.zip", tmp_path, marker)  # no archive needed: nothing to do

    def test_interrupted_extraction_is_redone(self, tmp_path, monkeypatch):
        archive = tmp_path / "A.zip"
        archive.write_bytes(_zip_bytes({"A/x.txt": b"1", "B/y.txt": b"2"}))
        into, marker = tmp_path / "data", tmp_path / "data" / ".A.zip.complete"
        real_move = dl._move_into
        calls = []

        def crash_after_first(src, dst):
            calls.append(src.name)
            if len(calls) > 1:
                raise KeyboardInterrupt("simulated crash while moving entries into place")
            real_move(src, dst)

        monkeypatch.setattr(dl, "_move_into", crash_after_first)
        with pytest.raises(KeyboardInterrupt):
            extract(archive, into, marker)
        assert (into / "A/x.txt").exists() and not (into / "B").exists()
        assert not marker.exists() and extraction_interrupted(marker)
        monkeypatch.setattr(dl, "_move_into", real_move)
        (into / "A" / "user_file.csv").write_text("kept")
        extract(archive, into, marker)
        assert (into / "B/y.txt").read_bytes() == b"2" and (into / "A/x.txt").read_bytes() == b"1"
        assert (into / "A/user_file.csv").read_text() == "kept"  # merged, not wiped
        assert marker.exists() and not extraction_interrupted(marker)

    def test_stale_temp_folder_from_a_crash_during_unpack_is_removed(self, tmp_path):
        archive = tmp_path / "A.zip"
        archive.write_bytes(_zip_bytes({"A/x.txt": b"1"}))
        into, marker = tmp_path / "data", tmp_path / "data" / ".A.zip.complete"
        (into / ".A.zip.complete.tmp-old" / "A").mkdir(parents=True)
        extract(archive, into, marker)
        assert not (into / ".A.zip.complete.tmp-old").exists()

    def test_damaged_archive_and_path_traversal(self, tmp_path):
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"not a zip")
        with pytest.raises(DatasetError, match="bad.zip.*damaged"):
            extract(bad, tmp_path / "o", tmp_path / "o" / ".m")
        evil = tmp_path / "evil.zip"
        evil.write_bytes(_zip_bytes({"../escape.txt": b"x"}))
        with pytest.raises(DatasetError, match="outside"):
            extract(evil, tmp_path / "o", tmp_path / "o" / ".m")
        assert not (tmp_path / "escape.txt").exists()
        evil_tar = tmp_path / "evil.tar.gz"
        evil_tar.write_bytes(_tar_bytes({"../escape.txt": b"x"}))
        with pytest.raises(DatasetError, match="outside"):
            extract(evil_tar, tmp_path / "o", tmp_path / "o" / ".m")
        assert not (tmp_path / "escape.txt").exists()


SPEC = ArchiveSpec(name="Toy", url="http://127.0.0.1:9/Toy.zip", env="SOSC_TOY_URL", filename="Toy.zip", folder="Toy")


def _find_toy(root):
    if not (root / "Toy" / "ok.txt").is_file():
        raise DatasetError(f"no Toy tree: looked for {root / 'Toy' / 'ok.txt'}")
    return root / "Toy"


class TestEnsureBenchmark:
    def test_url_precedence(self, monkeypatch):
        monkeypatch.delenv("SOSC_TOY_URL", raising=False)
        assert resolve_url(SPEC) == SPEC.url
        monkeypatch.setenv("SOSC_TOY_URL", "http://mirror/Toy.zip")
        assert resolve_url(SPEC) == "http://mirror/Toy.zip"
        assert resolve_url(SPEC, "http://arg/Toy.zip") == "http://arg/Toy.zip"

    def test_download_extract_then_marker_prevents_redownload(self, loopback_server, tmp_path, monkeypatch):
        loopback_server.files["/Toy.zip"] = _zip_bytes({"Toy/ok.txt": b"ok"})
        monkeypatch.setenv("SOSC_TOY_URL", loopback_server.url("/Toy.zip"))
        ensure_benchmark(SPEC, tmp_path, _find_toy, progress=False)
        assert (tmp_path / "Toy/ok.txt").read_bytes() == b"ok"
        assert SPEC.marker(tmp_path).exists() and not (tmp_path / "Toy.zip").exists()
        ensure_benchmark(SPEC, tmp_path, _find_toy, progress=False)
        assert len(loopback_server.requests) == 1

    def test_interrupted_extraction_counts_as_missing(self, loopback_server, tmp_path):
        loopback_server.files["/Toy.zip"] = _zip_bytes({"Toy/ok.txt": b"ok", "Toy/more.txt": b"m"})
        (tmp_path / "Toy").mkdir()
        (tmp_path / "Toy/ok.txt").write_bytes(b"ok")  # looks complete...
        dl._inprogress(SPEC.marker(tmp_path)).write_text("Toy.zip")  # ...but the extraction was cut short
        with pytest.raises(DatasetError, match="interrupted"):
            ensure_benchmark(SPEC, tmp_path, _find_toy, download=False)
        ensure_benchmark(SPEC, tmp_path, _find_toy, url=loopback_server.url("/Toy.zip"), progress=False)
        assert (tmp_path / "Toy/more.txt").exists() and not extraction_interrupted(SPEC.marker(tmp_path))

    def test_download_false_never_downloads_and_says_what_to_put_where(self, loopback_server, tmp_path):
        loopback_server.files["/Toy.zip"] = _zip_bytes({"Toy/ok.txt": b"ok"})
        with pytest.raises(DatasetError) as err:
            ensure_benchmark(SPEC, tmp_path, _find_toy, download=False, url=loopback_server.url("/Toy.zip"))
        msg = str(err.value)
        assert "download=False" in msg and "Toy.zip" in msg and str(tmp_path) in msg and "SOSC_TOY_URL" in msg
        assert loopback_server.requests == []

    def test_offline_says_which_file_to_put_where(self, tmp_path):
        with pytest.raises(DatasetError) as err:
            ensure_benchmark(SPEC, tmp_path, _find_toy, url="http://127.0.0.1:9/Toy.zip", progress=False)
        msg = str(err.value)
        assert "could not be downloaded" in msg and "Toy.zip" in msg and f"extract it into {tmp_path}" in msg

    def test_archive_without_the_expected_tree(self, loopback_server, tmp_path):
        loopback_server.files["/Toy.zip"] = _zip_bytes({"Other/ok.txt": b"ok"})
        with pytest.raises(DatasetError, match="Other/.*still not found"):
            ensure_benchmark(SPEC, tmp_path, _find_toy, url=loopback_server.url("/Toy.zip"), progress=False)

    def test_archive_placed_by_hand_is_extracted_and_kept(self, tmp_path):
        (tmp_path / "Toy.zip").write_bytes(_zip_bytes({"Toy/ok.txt": b"ok"}))
        ensure_benchmark(SPEC, tmp_path, _find_toy, progress=False)
        assert (tmp_path / "Toy/ok.txt").exists() and (tmp_path / "Toy.zip").exists()


class TestCheckBenchmark:
    """What ensure_benchmark would conclude, in seconds and without downloading (sosc's first check)."""

    def test_a_tree_that_is_there_passes_without_any_network(self, tmp_path):
        (tmp_path / "Toy").mkdir()
        (tmp_path / "Toy" / "ok.txt").write_text("ok")
        check_benchmark(SPEC, tmp_path, _find_toy, url="http://127.0.0.1:9/Toy.zip")

    def test_download_false_says_what_to_put_where(self, tmp_path):
        with pytest.raises(DatasetError, match=r"download=False.*Toy\.zip.*SOSC_TOY_URL"):
            check_benchmark(SPEC, tmp_path, _find_toy, download=False)

    def test_an_unreachable_server_says_what_to_put_where_at_once(self, tmp_path):
        start = time.perf_counter()
        with pytest.raises(DatasetError) as err:
            check_benchmark(SPEC, tmp_path, _find_toy, url="http://127.0.0.1:9/Toy.zip")
        msg = str(err.value)
        assert "could not be downloaded: http://127.0.0.1:9/Toy.zip: 127.0.0.1:9 cannot be reached" in msg
        assert f"extract it into {tmp_path}" in msg and "\n" not in msg
        assert time.perf_counter() - start < 5
        assert list(tmp_path.iterdir()) == []  # nothing written

    def test_a_server_that_answers_is_left_to_prepare_data(self, loopback_server, tmp_path):
        loopback_server.files["/Toy.zip"] = _zip_bytes({"Toy/ok.txt": b"ok"})
        check_benchmark(SPEC, tmp_path, _find_toy, url=loopback_server.url("/Toy.zip"))
        assert loopback_server.requests == [] and list(tmp_path.iterdir()) == []
