"""Alembic migrations of the cloud database (run them with :mod:`cloud_sync.service.migrate`).

A package (with ``versions`` a package too) so that ``env.py`` and every revision ship with the
distribution as modules; ``script.py.mako`` ships as package data. There is no ``alembic.ini``: the
configuration is built in code by :func:`cloud_sync.service.migrate.alembic_config`.
"""
