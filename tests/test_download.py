"""The download path of load_dataset, against HTTP servers on 127.0.0.1 (never the internet).

Mirrors used below:
- ``good`` serves the shared MNIST folder (the ``mnist_dir`` fixture);
- ``corrupt`` serves the same names with wrong contents: a truncated gzip
  stream, a well-formed gzip of other bytes, and an HTML page;
- ``empty`` serves a folder with nothing in it (404 for every file);
- ``down`` is a port nobody listens on (connection refused).
"""
import functools
import gzip
import http.server
import re
import socket
import threading
import warnings

import numpy as np
import pytest

from fastnet.data import DatasetNotFoundError, load_dataset, read_idx
from fastnet.data import datasets
from fastnet.data.datasets import DatasetSpec, FileSpec

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


class Server:
    """A static file server on an ephemeral port in a daemon thread, logging requested paths."""

    def __init__(self, folder):
        self.requests = []
        server = self

        class Handler(_Handler):
            def do_GET(self):
                server.requests.append(self.path.lstrip("/"))
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(isolated_data_env):
    """Every test here sees only the data it makes (tests/conftest.py)."""


@pytest.fixture(scope="module")
def servers(mnist_dir, tmp_path_factory):
    corrupt = tmp_path_factory.mktemp("corrupt")
    for i, name in enumerate(NAMES):
        good = (mnist_dir / (name + ".gz")).read_bytes()
        bad = [good[: len(good) // 2],                                  # truncated download
               gzip.compress(gzip.decompress(good)[:-1] + b"\x07", 1),  # valid gzip, wrong bytes
               b"<html>503 Service Unavailable</html>",                 # an error page
               gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x05")][i]         # a valid but wrong IDX
        (corrupt / (name + ".gz")).write_bytes(bad)
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/"
    running = {"good": Server(mnist_dir), "corrupt": Server(corrupt),
               "empty": Server(tmp_path_factory.mktemp("empty"))}
    yield dict(running, down=down)
    for server in running.values():
        server.close()


@pytest.fixture
def logs(servers):
    for name in ("good", "corrupt", "empty"):
        servers[name].requests.clear()
    return {name: servers[name].requests for name in ("good", "corrupt", "empty")}


def cache_listing(cache):
    """The files in the cache, but the stamps of files verified on use (datasets.STAMPS)."""
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name != datasets.STAMPS)


def test_download_falls_back_past_down_and_corrupt_mirrors(tmp_path, servers, logs, mnist_dir):
    mirrors = [servers["down"], servers["empty"].url, servers["corrupt"].url, servers["good"].url]
    data = load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=mirrors, progress=False)
    assert [a.shape for a in data] == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    np.testing.assert_array_equal(data.train_images, read_idx(mnist_dir / "train-images-idx3-ubyte.gz"))
    # Every file was asked of each live mirror, in order, and kept only from the good one.
    expected = [name + ".gz" for name in NAMES]
    assert logs["empty"] == expected and logs["corrupt"] == expected and logs["good"] == expected
    assert cache_listing(tmp_path / "cache") == sorted(expected)  # nothing partial left behind
    for name in expected:
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == (mnist_dir / name).read_bytes()


def test_second_load_uses_the_cache(tmp_path, servers, logs):
    load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], progress=False)
    logs["good"].clear()
    load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], offline=True)
    assert logs["good"] == []


def test_only_missing_files_are_downloaded(tmp_path, servers, logs, mnist_dir):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (cache / name).write_bytes((mnist_dir / name).read_bytes())
    load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], progress=False)
    assert logs["good"] == ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_all_mirrors_failing_explains_everything(tmp_path, servers, logs):
    mirrors = [servers["down"], servers["empty"].url, servers["corrupt"].url]
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=mirrors, progress=False)
    message = str(info.value)
    first = "train-images-idx3-ubyte.gz"
    assert f"{tmp_path / 'cache' / 'mnist'} (does not exist)" in message
    assert f"{servers['down']}{first}: download failed (" in message
    assert "refused" in message.lower()
    assert f"{servers['empty'].url}{first}: download failed (HTTP 404" in message
    assert f"{servers['corrupt'].url}{first}: not a valid gzip file (" in message
    assert "--data DIR" in message and "FASTNET_DATA" in message
    assert cache_listing(tmp_path / "cache") == []  # no partial or corrupt file kept


@pytest.mark.parametrize("i, reason", [(1, "checksum mismatch (SHA-256 of the decompressed file: "
                                          "expected 65a50cbb"),
                                       (2, "not a gzip file (it starts with b'<html>503"),
                                       (3, "checksum mismatch")])
def test_each_kind_of_corrupt_file_is_rejected(tmp_path, servers, logs, mnist_dir, i, reason):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for j, name in enumerate(NAMES):  # all but file i are already there
        if j != i:
            (cache / (name + ".gz")).write_bytes((mnist_dir / (name + ".gz")).read_bytes())
    with pytest.raises(DatasetNotFoundError, match=re.escape(reason)):
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["corrupt"].url],
                     progress=False)
    assert not (cache / (NAMES[i] + ".gz")).exists()
    assert len(cache_listing(cache)) == 3


def test_offline_refuses_with_a_helpful_message(tmp_path, servers, logs):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], offline=True)
    message = str(info.value)
    assert "Did not download: offline=True." in message
    assert str(tmp_path / "cache" / "mnist") in message
    assert "FASTNET_DATA" in message and "--data DIR" in message
    assert logs["good"] == [] and not (tmp_path / "cache").exists()


def test_fastnet_offline_env_refuses(tmp_path, servers, logs, monkeypatch):
    monkeypatch.setenv("FASTNET_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="FASTNET_OFFLINE=1 is set"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url])
    assert logs["good"] == []


def test_fastnet_mirrors_env_and_name_placeholder(tmp_path, servers, logs, monkeypatch):
    # The corrupt server 404s under /mnist/, then the good one is tried.
    monkeypatch.setenv("FASTNET_MIRRORS", f"{servers['corrupt'].url}{{name}}/, {servers['good'].url}")
    load_dataset("mnist", cache_dir=tmp_path / "cache", progress=False)
    assert logs["corrupt"] == [f"mnist/{name}.gz" for name in NAMES]
    assert len(logs["good"]) == 4


def test_default_cache_dir_is_used(tmp_path, servers, logs):
    load_dataset("mnist", mirrors=servers["good"].url, progress=False)
    assert len(cache_listing(tmp_path / "default-cache" / "mnist")) == 4


@pytest.fixture
def unverifiable(monkeypatch):
    """A data set whose table entry has no checksum at all, served by the good mirror."""
    files = tuple(FileSpec(name, None, None) for name in NAMES)
    monkeypatch.setitem(datasets.DATASETS, "nosums", DatasetSpec(files=files, mirrors=()))


def test_unverifiable_download_is_refused_by_default(tmp_path, servers, logs, unverifiable):
    with pytest.raises(DatasetNotFoundError, match="knows no checksum for train-images-idx3-ubyte, "
                                                   "so it was not kept"):
        load_dataset("nosums", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], progress=False)
    assert cache_listing(tmp_path / "cache") == []


def test_unverifiable_download_kept_on_opt_out(tmp_path, servers, logs, unverifiable):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset("nosums", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url],
                            progress=False, allow_unverified=True)
    assert len(data.train_images) == 60000
    assert any("unverified" in str(w.message) for w in caught)


def test_kmnist_downloads_are_checked_by_gz_md5(tmp_path, servers, logs):
    """KMNIST's table knows only .gz MD5s: the MNIST files served in its place fail them."""
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch \\(MD5 of the .gz file: "
                                                   "expected bdb82020997e1d708af4cf47b453dcf7"):
        load_dataset("kmnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], progress=False)
    assert cache_listing(tmp_path / "cache") == []


class _Trickle(http.server.BaseHTTPRequestHandler):
    """A server that sends a byte every 0.05 s, forever (or as many bytes as asked, at once)."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        import time

        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(10_000):
                self.wfile.write(b"\x1f")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


def test_a_trickling_server_is_given_up_after_the_deadline(tmp_path, monkeypatch):
    """Issue 15, item 10: a server trickling a byte every 5 s hung the run."""
    import time

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(datasets, "DOWNLOAD_SECONDS", 0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(DatasetNotFoundError, match="still downloading after 0.5 s"):
            load_dataset("mnist", cache_dir=tmp_path / "cache",
                         mirrors=[f"http://127.0.0.1:{httpd.server_address[1]}/"], progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert time.monotonic() - t0 < 10
    assert cache_listing(tmp_path / "cache") == []


def test_a_download_larger_than_any_data_set_file_is_refused(servers, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(DatasetNotFoundError, match="more than the 1000 allowed|more than 1000 bytes"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", mirrors=[servers["good"].url], progress=False)
    assert cache_listing(tmp_path / "cache") == []
