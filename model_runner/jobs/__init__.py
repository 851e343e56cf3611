"""Long-running units of work shared by the CLI and the service."""
