"""ASGI middleware: what every answer tells a browser about itself.

- Content-Security-Policy: the page's own inline script and style (by their sha256) and
  requests to this origin, nothing else: no other script, style, image, frame or form
  target, and no framing by another site (`frame-ancestors 'none'`).
- X-Content-Type-Options: nosniff (a JSON answer is never run as a script);
  Referrer-Policy: no-referrer; Cross-Origin-Opener-Policy: same-origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from service.errors import Receive, Send


def _hashes(page: str, tag: str) -> list[str]:
    """CSP source expressions for each inline <tag> element of `page`."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks
    ]


def content_security_policy(page: str) -> str:
    """The policy for `page` (and every other answer): its inline script and style only."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(_hashes(page, 'script'))}",
            f"style-src {' '.join(_hashes(page, 'style'))}",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    def __init__(self, app, page: Path) -> None:
        self.app = app
        self.page = page
        self._headers: list[tuple[bytes, bytes]] | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self._headers is None:  # read once, at the first request (no work at import)
            policy = content_security_policy(self.page.read_text(encoding="utf-8"))
            self._headers = [
                (b"content-security-policy", policy.encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"no-referrer"),
                (b"cross-origin-opener-policy", b"same-origin"),
            ]
        return self._headers

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = self.headers()
        names = {name for name, _ in extra}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)
