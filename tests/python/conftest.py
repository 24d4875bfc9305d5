"""tests/python: the aploss Python package. Run from the repository root:
    /usr/bin/python3 -m pytest tests/python
The package is imported from python/ (added to sys.path here); the library is build/libaploss.so
or APLOSS_LIBRARY (CTest's python_package test passes its own build's). Without torch or numpy
every test is skipped with the reason."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(_ROOT, "python"))
