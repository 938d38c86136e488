"""Security headers on every response."""

from flask import Flask, request

#: Only the app's own assets (images may also be data: URIs: Bootstrap draws its icons with them).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
#: The Swagger UI page (/api/docs) alone needs inline styles for its layout; scripts stay 'self' only.
CSP_API_DOCS = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


class SecurityHeaders:
    def __init__(self, app: Flask | None = None):
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.after_request(self._apply)

    @staticmethod
    def _apply(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP_API_DOCS if request.path == "/api/docs" else CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith("/static/"):
            # Audit pages, exports and a new token's page hold sensitive data: no browser or proxy cache.
            headers.setdefault("Cache-Control", "no-store")
        return response


def init_app(app: Flask) -> None:
    SecurityHeaders(app)
