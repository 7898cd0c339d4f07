"""Is a server reachable? A bounded probe, asked before a download that would otherwise wait.

Offline, a download library may retry for a minute before it fails (huggingface_hub retries
each file five times with back-off). :func:`unreachable` answers in at most ``timeout``
seconds, name resolution included, so that ``sosc`` can say at once what to do instead
(:mod:`sosc.matchers.backbone` for timm's hub, :mod:`sosc.data.download` for the benchmarks).
A proxy in the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) is probed instead
of the server, as ``urllib`` and ``requests`` would connect through it.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

#: Seconds a probe waits for a connection (name resolution included).
PROBE_SECONDS = 5.0


def _endpoint(url: str) -> tuple[str, int] | None:
    """The ``(host, port)`` a connection to ``url`` opens first: its proxy's when one applies."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if target.hostname:
            return target.hostname, target.port or (443 if target.scheme == "https" else 80)
    return parsed.hostname, port


def unreachable(url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """``None`` when a TCP connection to ``url``'s server (or its proxy) opens within
    ``timeout`` seconds, else one line that says why not. ``file://`` URLs: whether the file
    exists. Nothing is sent over the connection.

    >>> unreachable("file:///no/such/archive.zip")
    '/no/such/archive.zip does not exist'
    >>> unreachable("not a url") is not None
    True
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        return None if path.exists() else f"{path} does not exist"
    endpoint = _endpoint(url)
    if endpoint is None:
        return f"{url!r} names no server"
    host, port = endpoint
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=probe, name=f"sosc-probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout)  # name resolution ignores socket timeouts: the thread bounds it
    if not outcome:
        return f"{host}:{port} did not answer within {timeout:g} s"
    err = outcome[0]
    if err is None:
        return None
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return f"{host}:{port} cannot be reached ({reason})"
