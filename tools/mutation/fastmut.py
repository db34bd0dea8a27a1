"""Run test files against many mutmut mutants in ONE process: mutmut's trampoline reads
MUTANT_UNDER_TEST at every call, so no re-import is needed between mutants.

usage, from the tree mutmut wrote (``cd mutants``) with ``PYTHONPATH=$PWD``:
    python fastmut.py LISTFILE TEST_PATH... [pytest args]
LISTFILE holds one mutant name per line. Prints ORIG PASS (the unmutated code must pass),
then KILLED / SURVIVED / ERROR<rc> per mutant. Test paths are absolute (a checkout's
tests/), so tests written after the mutmut run are checked against its mutants."""
import contextlib
import io
import os
import sys
import tempfile

import pytest

lst, *args = sys.argv[1:]
names = [ln.strip() for ln in open(lst) if ln.strip()]
here = os.getcwd()
for name in ["", *names]:
    os.environ["MUTANT_UNDER_TEST"] = name
    buf = io.StringIO()
    bt = tempfile.mkdtemp(prefix="fastmut.")
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-n", "0", "-o",
                          f"pythonpath={here}", f"--basetemp={bt}", *args])
    if name == "":
        print("ORIG", "PASS" if rc == 0 else f"FAIL rc={rc}", flush=True)
        if rc != 0:
            print(buf.getvalue()[-3000:])
            sys.exit(1)
        continue
    status = {0: "SURVIVED", 1: "KILLED"}.get(int(rc), f"ERROR{int(rc)}")
    print(status, name, flush=True)
