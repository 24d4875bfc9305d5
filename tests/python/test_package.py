"""The package itself: the ctypes structures match include/aploss/aploss.h, the ImportError
without a library says what to run, and the README's PyTorch example runs as written."""
import os
import re
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (apt-get install python3-torch)")

from aploss import _lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(ROOT, "include", "aploss", "aploss.h")


def _header():
    with open(HEADER) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _struct_fields(text, name):
    m = re.search(r"typedef struct\s*\{([^{}]*)\}\s*%s\s*;" % name, text, flags=re.S)
    assert m, "typedef struct %s not found in %s" % (name, HEADER)
    return [re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", decl.strip()).group(1)
            for decl in m.group(1).split(";") if decl.strip()]


def _enum_names(text, name):
    m = re.search(r"typedef enum\s*\{([^{}]*)\}\s*%s\s*;" % name, text, flags=re.S)
    assert m, "typedef enum %s not found" % name
    return [e.split("=")[0].strip() for e in m.group(1).split(",") if e.strip()]


@pytest.mark.parametrize("cname,pyclass", [("apl_problem", _lib.Problem),
                                           ("apl_output", _lib.Output),
                                           ("apl_result", _lib.Result),
                                           ("apl_variant", _lib.Variant),
                                           ("apl_error", _lib.Error)])
def test_structures_match_the_header(cname, pyclass):
    assert _struct_fields(_header(), cname) == [f[0] for f in pyclass._fields_]


def test_enums_match_the_header():
    text = _header()
    assert _enum_names(text, "apl_status") == _lib.STATUS_NAMES
    losses = _enum_names(text, "apl_loss")
    assert losses[:-1] == ["APL_LOSS_" + n.upper() for n in _lib.LOSSES]  # last: APL_LOSS_COUNT
    assert _enum_names(text, "apl_device") == ["APL_CPU", "APL_GPU"]
    assert re.search(r"#define APL_MSG_LEN %d\b" % _lib.APL_MSG_LEN, text)


def _import_in(env_extra, pythonpath):
    env = {k: v for k, v in os.environ.items() if k != "APLOSS_LIBRARY"}
    env.update(env_extra, PYTHONPATH=pythonpath, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", "import aploss.torch"], env=env,
                          capture_output=True, text=True)


def test_import_error_says_what_to_run(tmp_path):
    r = _import_in({"APLOSS_LIBRARY": str(tmp_path / "missing.so")}, os.path.join(ROOT, "python"))
    assert r.returncode != 0
    assert "ImportError: aploss: APLOSS_LIBRARY=" in r.stderr and "no such file" in r.stderr
    assert "cmake --build build" in r.stderr
    # A checkout without build/: the package copied to a tree that has no build/libaploss.so.
    shutil.copytree(os.path.join(ROOT, "python", "aploss"), tmp_path / "python" / "aploss")
    r = _import_in({}, str(tmp_path / "python"))
    assert r.returncode != 0
    assert "%s not found" % (tmp_path / "build" / "libaploss.so") in r.stderr
    assert "bash tests/run.sh" in r.stderr and "cmake --build build" in r.stderr


def test_import_succeeds_with_the_library():
    r = _import_in({"APLOSS_LIBRARY": _lib.path}, os.path.join(ROOT, "python"))
    assert r.returncode == 0, r.stderr


def test_readme_example_runs_as_written(tmp_path):
    """The README's "PyTorch" example (between its markers), run from the repository root with
    PYTHONPATH=python as the README says; it prints the loss, which must have fallen."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    m = re.search(r"<!-- pytorch-example:begin -->\s*```python\n(.*?)```\s*"
                  r"<!-- pytorch-example:end -->", readme, flags=re.S)
    assert m, "README.md has no PyTorch example between the markers"
    code = m.group(1)
    assert len([l for l in code.splitlines() if l.strip()]) <= 14  # a short example
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH="python", APLOSS_LIBRARY=_lib.path,
               PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, last = [float(x) for x in re.findall(r"loss (\d\.\d+)", r.stdout)][:2]
    assert last < first - 0.3, r.stdout
