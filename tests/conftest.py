import os
import sys

# Tests import their helpers (e.g. sampler_reference) from this folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
