"""Golden tests: fixtures/<case>.json in, fixtures/<case>.rows.json expected.
Run `python3 -m unittest`; `BLESS=1 python3 -m unittest` rewrites the expected files."""

import os
import unittest

from aurora_kit import StaticHost, golden
from plugin import PLUGIN


class Fixtures(unittest.TestCase):
    def test_fixtures(self):
        golden(PLUGIN, os.path.dirname(os.path.abspath(__file__)), StaticHost())


if __name__ == "__main__":
    unittest.main()
