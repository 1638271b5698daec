"""Run by test_weights.py, several at once (under torchrun): fetch ``ifan-small`` from the URL given."""

import sys

from weights_server import register_small

from ifan.models.fetch import fetch

register_small()
print(fetch(["ifan-small"], [sys.argv[1]], retries=0, progress=False)[0])
