"""The command line as the user typed it, for provenance (``sys.argv`` is not ours in tests)."""

argv: list[str] = ["qx"]
