"""The registry server over one ``Registry``: the REST API (``api.py``, bodies in ``schemas.py``,
files in ``downloads.py``) and the web UI (``ui.py``), put together by ``app.create_app``."""
