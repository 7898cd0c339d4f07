"""The bounded reachability probe: an answer within its timeout, whatever the network does."""

import socket
import time

from sosc import network
from sosc.network import unreachable


class TestUnreachable:
    def test_a_listening_loopback_port_is_reachable(self):
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            assert unreachable(f"http://127.0.0.1:{server.getsockname()[1]}/x.zip", timeout=5) is None

    def test_a_closed_port_says_why_at_once(self):
        with socket.socket() as probe:  # a port that nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        reason = unreachable(f"https://127.0.0.1:{port}/x", timeout=5)
        assert reason.startswith(f"127.0.0.1:{port} cannot be reached (") and time.perf_counter() - start < 5

    def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(self, monkeypatch):
        """A network that drops packets, or a name resolution that hangs: the thread bounds both."""
        def hang(*args, **kwargs):
            time.sleep(30)
            raise TimeoutError("timed out")  # what a real connection does in the end (an OSError)

        monkeypatch.setattr(network.socket, "create_connection", hang)
        start = time.perf_counter()
        assert unreachable("https://hub.example/x", timeout=0.5) == "hub.example:443 did not answer within 0.5 s"
        assert time.perf_counter() - start < 3

    def test_a_proxy_in_the_environment_is_probed_instead(self, monkeypatch):
        seen = []

        def connect(address, timeout):
            seen.append(address)
            raise OSError("refused")

        monkeypatch.setenv("https_proxy", "http://proxy.local:3128")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setattr(network.socket, "create_connection", connect)
        assert unreachable("https://hub.example/x", timeout=2).startswith("proxy.local:3128 cannot be reached")
        assert seen == [("proxy.local", 3128)]

    def test_file_urls(self, tmp_path):
        (tmp_path / "a.zip").write_bytes(b"x")
        assert unreachable((tmp_path / "a.zip").as_uri()) is None
        assert unreachable((tmp_path / "b.zip").as_uri()) == f"{tmp_path / 'b.zip'} does not exist"
