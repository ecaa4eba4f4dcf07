"""A real headless Chromium, driven over the DevTools protocol through its pipe (stdlib only).

    >>> with Chromium(find_chromium(), tmp) as browser:                      # doctest: +SKIP
    ...     tab = browser.open(page.as_uri(), 1280, 800)
    ...     tab.evaluate("document.title")

`--remote-debugging-pipe` talks JSON messages ended by a NUL byte on the
browser's file descriptors 3 (commands in) and 4 (replies and events out); a
`sh` wrapper maps them onto the pipes of the child's stdin and stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
REPLY_SECONDS = 60.0


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: $CHROMIUM, else the first on PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return shutil.which(given)
    return next((found for name in NAMES if (found := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """Chromium exited, did not answer in time, or answered a command with an error."""


class Chromium:
    """One headless browser process; `open` gives a tab of a given viewport size."""

    def __init__(self, executable: str, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        flags = [
            "--headless",
            "--no-sandbox",  # CI containers run as root
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile / 'data'}",
            "--window-size=1280,800",
            "about:blank",
        ]
        wrapper = 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", wrapper, executable, *flags],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._next = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrowserError, OSError):  # it may be gone already
                self.send("Browser.close")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _message(self, deadline: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        out = self.process.stdout.fileno()
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise BrowserError(f"no answer from Chromium (log: {self.log})")
            chunk = os.read(out, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium exited (log: {self.log}):\n{self._tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        assert self.process.stdin is not None
        self._next += 1
        command: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        self.process.stdin.write(json.dumps(command).encode() + b"\0")
        self.process.stdin.flush()
        deadline = time.monotonic() + REPLY_SECONDS
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def wait_for(self, event: str, session: str) -> dict[str, Any]:
        """The next `event` of `session` (one that already arrived counts)."""
        deadline = time.monotonic() + REPLY_SECONDS
        while True:
            for message in self._events:
                if message.get("method") == event and message.get("sessionId") == session:
                    self._events.remove(message)
                    return message
            message = self._message(deadline)
            if "method" in message:
                self._events.append(message)

    def open(self, url: str, width: int, height: int) -> Tab:
        """A new tab with a `width` x `height` viewport, `url` loaded (its load event fired)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics, session)
        self.send("Page.enable", {}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Tab(self, target, session)


class Tab:
    """A page in the browser: evaluate JavaScript in it, close it."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser, self.target, self.session = browser, target, session

    def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` (a promise is awaited)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.browser.send("Runtime.evaluate", params, self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
