"""The audit log's HTML pages (``views.bp``) and JSON API (``api.blp``)."""
