"""ASGI middleware: `/readyz` says what is served, in a header: the model version, runtime and
precision of the stored champion (the export's labels), as evaluate measured it."""

from __future__ import annotations

HEADER = b"x-klue-nli-served"


class ServedHeader:
    """Adds `x-klue-nli-served: v<version> <runtime> <quantize>` to `/readyz` answers."""

    def __init__(self, app) -> None:
        self.app = app
        self._value: bytes | None = None

    def _served(self) -> bytes:
        if self._value is None:  # read once, in the worker, from the BentoML store
            import bentoml

            from klue_nli.inference.bento import BENTO_MODEL, served_variant

            model = bentoml.models.get(BENTO_MODEL)
            version = model.info.labels.get("registry_version", "unknown")
            self._value = f"v{version} {' '.join(served_variant(model))}".encode()
        return self._value

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            return await self.app(scope, receive, send)

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (HEADER, self._served())]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_header)
