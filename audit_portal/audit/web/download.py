"""An export as an HTTP download (the API's and the viewer's)."""

from __future__ import annotations

from flask import Response, stream_with_context

from ..read.export import Export


def download_response(export: Export) -> Response:
    """Stream ``export`` as an attachment, with its row count in ``X-Total-Count``."""
    response = Response(stream_with_context(export.chunks()), mimetype=None, content_type=export.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Total-Count"] = str(export.count)
    return response
