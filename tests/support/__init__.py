"""Helpers shared by the test suites and the benchmarks: real hubs in process and as
``sigshare-hub serve`` processes, ``sigshare-hub`` commands run in process, seeded forums, exact
oracles, test databases and certificates.

Nothing here is a pytest fixture; the fixtures live in the ``conftest.py`` files and build on
these modules. Every module imports as ``tests.support.<name>`` from the repository root (the
pytest ``pythonpath`` and ``python -m bench`` both start there).
"""
