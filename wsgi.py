"""WSGI entry point: `gunicorn wsgi:app`."""

from loyalty.app import create_app, freeze_startup_heap

app = create_app()
freeze_startup_heap()  # each worker imports this module; see the function for why
