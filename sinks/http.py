"""The HTTP/1.1 client the webhook and Web Push providers share: one aiohttp session per event loop,
kept for the life of the loop (sinks/loop.py), so connections stay open between batches.

aiohttp rather than httpx here: on our profiles httpx spent several times aiohttp's CPU per request
(its pool re-checks every kept connection on each request), and these providers send one request
per message. APNs needs HTTP/2 and has a client of its own (sinks/apns.py).
"""

from __future__ import annotations

import re

import aiohttp
from curl_cffi import CurlECode, CurlError
from curl_cffi.requests.exceptions import SSLError

from sinks.loop import LoopBound

TIMEOUT_S = 10.0
# A batch's requests all go out at once: at most this many connections per host.
CONNECTIONS_PER_HOST = 100
# libcurl's own words in curl_cffi's message: "Failed to perform, curl: (7) <words>. See https://..."
CURL_WORDS = re.compile(r"curl: \(\d+\) (.*?)\.? See https://")


def timeouts(timeout_s: float = TIMEOUT_S) -> aiohttp.ClientTimeout:
    """Connecting, and each wait for the server's bytes, within `timeout_s` seconds."""
    return aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)


def session(timeout_s: float = TIMEOUT_S) -> aiohttp.ClientSession:
    """A session for the running loop, as the providers configure theirs."""
    return aiohttp.ClientSession(timeout=timeouts(timeout_s),
                                 connector=aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_HOST))


def session_per_loop(timeout_s: float = TIMEOUT_S) -> LoopBound[aiohttp.ClientSession]:
    return LoopBound(lambda: session(timeout_s), close=aiohttp.ClientSession.close)


def no_answer(error: BaseException) -> str:
    """The reason for a request that got no HTTP answer, in the names statuses have always used
    (ConnectError, ConnectTimeout, ReadTimeout, ...), whichever client raised it."""
    if isinstance(error, CurlError):  # APNs' client (libcurl): its code and words say what happened
        words = match[1] if (match := CURL_WORDS.search(str(error))) else str(error)
        if error.code == CurlECode.OPERATION_TIMEDOUT:
            # "Connection timed out" (or "Resolving") before the request went out, "Operation" after it
            return f"{'ReadTimeout' if words.startswith('Operation') else 'ConnectTimeout'}: {words}"
        if error.code in (CurlECode.COULDNT_CONNECT, CurlECode.COULDNT_RESOLVE_HOST) or isinstance(error, SSLError):
            return f"ConnectError: {words}"
        return f"{type(error).__name__}: {words}"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout: "
    if isinstance(error, (aiohttp.SocketTimeoutError, TimeoutError)):
        return "ReadTimeout: "
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"ConnectError: {error.os_error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "RemoteProtocolError: Server disconnected without sending a response."
    return f"{type(error).__name__}: {error}"
