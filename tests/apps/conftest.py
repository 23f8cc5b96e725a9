"""Fixtures for the tests that run real application servers (gunicorn, uWSGI) and worker pools."""
