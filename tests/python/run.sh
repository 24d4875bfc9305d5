#!/usr/bin/env bash
# tests/python/run.sh LIB: CTest's python_package test: the Python package's pytest suite
# (tests/python) against the libaploss.so at LIB (passed on as APLOSS_LIBRARY). Exits 77
# (CTest: skipped) when the interpreter (APLOSS_PYTHON, default Debian's /usr/bin/python3)
# cannot import torch, numpy and pytest; the README's test command installs them.
set -u
lib=$1
py=${APLOSS_PYTHON:-/usr/bin/python3}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! why=$("$py" -c "import torch, numpy, pytest" 2>&1); then
    echo "skipped: $py cannot import torch, numpy and pytest (apt-get install python3-torch" \
         "python3-numpy python3-pytest): ${why##*$'\n'}"
    exit 77
fi
APLOSS_LIBRARY=$lib PYTHONDONTWRITEBYTECODE=1 exec "$py" -m pytest -p no:cacheprovider -q -rs \
    tests/python
