"""Test doubles shared by the tests and the benchmarks; import them as ``fakes.<module>`` (tests/ on sys.path)."""
