"""The service fixtures (a tiny sentiment champion under uvicorn) for the served-traffic tests."""

from tests.service.conftest import live, service_settings  # noqa: F401
