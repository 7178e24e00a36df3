"""Runs every test in this folder and ends with one line:
``python client: N passed, N failed, N skipped``; exits non-zero on a failure
or when no test ran.

The tests import ``flux_secrets`` from wherever Python finds it: ci.sh runs
them with a venv that has the wheel installed; from the source tree use
``PYTHONPATH=clients/python/src python3 clients/python/tests/run.py``.
"""

from __future__ import annotations

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def _test_id(test: object) -> str:
    parent = getattr(test, "test_case", None)  # a subTest reports for its test
    return (parent or test).id()  # type: ignore[union-attr]


def main() -> int:
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    suite = unittest.TestLoader().discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = {_test_id(t) for t, _ in result.failures + result.errors}
    failed |= {_test_id(t) for t in result.unexpectedSuccesses}
    skipped = {_test_id(t) for t, _ in result.skipped}
    passed = result.testsRun - len(failed) - len(skipped)
    reasons = sorted({why for _, why in result.skipped if why.startswith("SKIPPED")})
    for why in reasons:
        print(why)
    print(f"python client: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
