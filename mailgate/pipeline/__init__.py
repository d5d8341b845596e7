"""The one pipeline every mail goes through, the worker that drives it, and its steps."""
