"""The ModelRunner HTTP service: FastAPI app, micro-batched inference, training jobs, hot reload."""
