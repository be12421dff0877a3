"""The registry server: a REST API (``api.py``) and, later, the web UI, over one ``Registry``."""
