"""uvicorn set up for the app of :mod:`ssimae.serve.app` (:func:`make_server`).

* The error uvicorn answers itself is one line of JSON too: a request it cannot parse (bad
  or duplicate Content-Length, a garbage request line, bytes that are no HTTP, a bad chunk
  size, an unknown transfer coding) gets 400 ``{"error": ...}`` and the connection closed
  (:class:`JsonH11Protocol`: uvicorn's h11 protocol with that answer replaced). What stays
  uvicorn's: its text/plain 500 for a request task cancelled past the shutdown's wait (the
  batcher's 503s come first) and closing connections without an answer (a client gone, an
  idle keep-alive connection after 5 s).
* A request's line and headers together may hold at most :data:`MAX_HEADER_BYTES` (16 KiB);
  a larger block gets 431 ``{"error": ...}`` and the connection closed, whether it arrives in
  pieces (h11's bound on what it buffers) or all at once (measured once parsed:
  :func:`header_bytes`; uvicorn itself accepts a complete block of any size).
* A connection must send a request's headers within ``request_timeout_s`` of opening (or of
  its previous answer); otherwise it is closed without an answer (uvicorn itself waits
  forever for a request's first bytes). The body's own timeout is the app's (408).
* SIGTERM or SIGINT (:class:`GracefulServer`): uvicorn stops listening and closes idle
  connections; the batcher admits nothing more, gives the requests in progress
  ``shutdown_grace_s`` seconds to finish and then answers them 503 JSON
  (:meth:`ssimae.serve.batcher.Batcher.begin_shutdown`); uvicorn waits one second more for
  those answers, so nothing is cancelled midway and the process exits within about
  ``shutdown_grace_s`` + 1 s (a batch still in the network is left to its daemon thread).

Imports uvicorn and h11: load it only to serve.
"""
from __future__ import annotations

import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

ANSWER_MARGIN_S = 1.0  # uvicorn's wait, beyond the grace, for the 503 answers to be written
MAX_HEADER_BYTES = 16 * 1024  # a request's line and header block (docs/deploy.md, "Limits")
HEADERS_TOO_LARGE = 431


def _json_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")


def header_bytes(request: h11.Request) -> int:
    """Bytes of ``request``'s line and header block in the usual form (``METHOD target
    HTTP/1.1`` CRLF, ``name: value`` CRLF per header, the empty line): what a client sent is at
    least this long (h11 drops the whitespace around values)."""
    line = len(request.method) + len(request.target) + len(b"HTTP/") + len(request.http_version) + 4
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items()) + 2


class BoundedConnection(h11.Connection):
    """h11's server connection whose request headers hold at most :data:`MAX_HEADER_BYTES`:
    over that, :meth:`next_event` raises RemoteProtocolError with ``error_status_hint`` 431
    (h11 does so itself for an incomplete block that long). ``refused``: the last such error."""

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.refused: h11.RemoteProtocolError | None = None

    def next_event(self):
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as err:
            self.refused = err
            raise
        if isinstance(event, h11.Request) and header_bytes(event) > MAX_HEADER_BYTES:
            self.refused = h11.RemoteProtocolError("request headers too large", error_status_hint=HEADERS_TOO_LARGE)
            raise self.refused
        return event


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose own error answers are one line of JSON, which bounds a
    request's headers (:class:`BoundedConnection`), and which closes a connection that sends no
    complete request headers within ``request_timeout_s``."""

    request_timeout_s = 30.0  # set by make_server on a subclass

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conn = BoundedConnection()  # nothing received yet: replaces uvicorn's unbounded one

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 refused: 431 for headers over the bound, else 400."""
        refused = getattr(self.conn, "refused", None)
        if refused is not None and refused.error_status_hint == HEADERS_TOO_LARGE:
            status, reason = HEADERS_TOO_LARGE, b"Request Header Fields Too Large"
            body = _json_error(f"the request line and headers are over the limit of {MAX_HEADER_BYTES} bytes")
        else:
            status, reason = 400, b"Bad Request"
            body = _json_error("malformed HTTP request (it could not be parsed as HTTP/1.1)")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), (b"x-content-type-options", b"nosniff")]
        for event in (h11.Response(status_code=status, headers=headers, reason=reason), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_request_timer()

    def connection_lost(self, exc) -> None:
        timer = getattr(self, "_request_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _arm_request_timer(self) -> None:
        timer = getattr(self, "_request_timer", None)
        if timer is not None:
            timer.cancel()
        self._request_timer = self.loop.call_later(self.request_timeout_s, self._request_timed_out)

    def _request_timed_out(self) -> None:
        """No request under way since the timer was armed: the headers did not come in time."""
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class GracefulServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM/SIGINT also starts the batcher's shutdown."""

    def __init__(self, config: uvicorn.Config, batcher, grace_s: float):
        super().__init__(config)
        self.batcher, self.grace_s = batcher, grace_s

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            self.batcher.begin_shutdown(self.grace_s)
        super().handle_exit(sig, frame)


def make_server(app, options, quiet: bool = False) -> GracefulServer:
    """The uvicorn server of ``app`` (built by :func:`ssimae.serve.app.create_app` with
    ``options``, a :class:`ssimae.serve.options.ServeOptions`); ``quiet``: warnings only."""
    protocol = type("JsonH11Protocol", (JsonH11Protocol,), {"request_timeout_s": options.request_timeout_s})
    config = uvicorn.Config(app, http=protocol, log_level="warning" if quiet else "info", access_log=not quiet,
                            lifespan="on", timeout_graceful_shutdown=options.shutdown_grace_s + ANSWER_MARGIN_S,
                            server_header=False)
    return GracefulServer(config, app.state.batcher, options.shutdown_grace_s)
