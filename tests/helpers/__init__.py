"""Test helpers shared by the unit, integration and acceptance tests (tests/ is on sys.path through conftest.py)."""
