"""The development stack (``stack.py``: what ``make dev`` and the tests
start), the test helpers (``testing.py``) and their stand-ins. Not
installed; tests and benchmarks import it from the repository root."""
