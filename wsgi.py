"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

from audit_portal import create_app

app = create_app()
