"""Runs inside a report's session (as the session user, in its home): the
notebook through papermill, then a result file the bridge reads.

Standalone on purpose: the bridge passes this file's text to ``python -c``
(a subprocess as the session's uid, or ``docker exec`` in its container),
where only the session's own packages exist. Its one argument is JSON:
``{"input": "nb.ipynb", "parameters": {...}}``, paths relative to the home.

Writes ``.report/executed.ipynb`` (papermill saves it after every cell, and
on failure), ``.report/log`` and, last, ``.report/result.json``:
``{"status": "succeeded"|"failed", "error": {ename, evalue, traceback,
cell_index}|null, "artifacts": [{"name", "size"}]}`` (the regular files in
``output/``; the bridge checks each again itself).
"""

import json
import os
import stat
import sys
import traceback

REPORT_DIR = ".report"
OUTPUT_DIR = "output"


def _listing():
    found = []
    try:
        names = sorted(os.listdir(OUTPUT_DIR))
    except OSError:
        return found
    for name in names:
        try:
            st = os.lstat(os.path.join(OUTPUT_DIR, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append({"name": name, "size": st.st_size})
    return found


def _write_result(result):
    tmp = os.path.join(REPORT_DIR, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(REPORT_DIR, "result.json"))


def main(argv):
    config = json.loads(argv[1])
    os.makedirs(REPORT_DIR, exist_ok=True)
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    log = open(os.path.join(REPORT_DIR, "log"), "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    error = None
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError

        try:
            papermill.execute_notebook(
                config["input"], os.path.join(REPORT_DIR, "executed.ipynb"),
                parameters=config.get("parameters") or {},
                kernel_name=config.get("kernel_name") or "python3",
                cwd=os.getcwd(), progress_bar=False, log_output=False,
                request_save_on_cell_execute=True,
            )
        except PapermillExecutionError as e:
            error = {"ename": e.ename, "evalue": e.evalue, "traceback": list(e.traceback or []),
                     "cell_index": e.cell_index}
    except Exception as e:  # the kernel died, the notebook is unreadable, ...
        traceback.print_exc()
        error = {"ename": type(e).__name__, "evalue": str(e),
                 "traceback": traceback.format_exc().splitlines()[-20:], "cell_index": None}
    _write_result({"status": "failed" if error else "succeeded", "error": error,
                   "artifacts": _listing()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
