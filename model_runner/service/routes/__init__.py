"""HTTP routes, one module per concern; ``create_app`` includes every router listed in ``ROUTERS``."""
