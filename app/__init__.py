"""The service layer: the FastAPI application, its storage backends, and the ``suishen``
command line (:mod:`suishen.app.cli`).

This is the only layer that does I/O. Importing this package imports nothing else: the
command line must start fast, so FastAPI, uvicorn and the database drivers are imported
only by the modules (and the ``serve``/``migrate`` commands) that need them.
"""
