"""Driving headless Chromium from a test through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL on file descriptors 3 and 4),
so a test can choose a file in a page's file input, wait for the page, and take a
screenshot, with the standard library only."""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import time

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--force-device-scale-factor=1"]


def browser_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser (Debian's chromium package; .ci/run installs it when it can)")


class Browser:
    """``with Browser(profile_dir, (w, h)) as b:`` a headless Chromium with one page;
    ``b.call(method, **params)`` sends a command to that page and returns its result."""

    def __init__(self, profile: os.PathLike, size: tuple[int, int] = (900, 900), timeout: float = 60.0):
        self.timeout, self._next, self._buf = timeout, 0, b""
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        devnull = os.open(os.devnull, os.O_WRONLY)
        argv = [browser_path(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                "--remote-debugging-pipe", "about:blank"]
        actions = [(os.POSIX_SPAWN_DUP2, to_browser, 3), (os.POSIX_SPAWN_DUP2, from_browser, 4),
                   (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        self.pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions)
        for fd in (to_browser, from_browser, devnull):
            os.close(fd)
        self.session = None

    def __enter__(self) -> "Browser":
        deadline = time.monotonic() + self.timeout
        while not (pages := [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]):
            if time.monotonic() > deadline:
                raise TimeoutError("the browser opened no page")
            time.sleep(0.05)
        page = pages[0]
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._send("Browser.close", {}, None)
        except OSError:
            pass
        deadline = time.monotonic() + 15
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):  # the browser this object started
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self._in)
        os.close(self._out)

    def _send(self, method: str, params: dict, session: str | None) -> int:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        return self._next

    def _receive(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("the browser did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, **params) -> dict:
        """Send ``method`` (to the page once attached) and return its result (events that
        arrive in between are dropped)."""
        wanted = self._send(method, params, self.session)
        while True:
            msg = self._receive()
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        """Wait until a JavaScript expression is true in the page (or fail after the timeout)."""
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never made {expression!r} true")
            time.sleep(0.05)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def choose_file(self, selector: str, path: os.PathLike) -> None:
        """Put a file into a file input, as a user choosing it does (fires its change event)."""
        obj = self.call("Runtime.evaluate", expression=f"document.querySelector({json.dumps(selector)})")
        self.call("DOM.setFileInputFiles", files=[str(path)], objectId=obj["result"]["objectId"])

    def screenshot(self) -> bytes:
        """The page's viewport as PNG bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
