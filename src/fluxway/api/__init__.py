"""HTTP surface: thin ASGI handlers over the runtime."""
