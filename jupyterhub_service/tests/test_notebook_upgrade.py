"""notebook_upgrade: what nbformat can read, upgrade or repair becomes a valid
v4 notebook; what is not a notebook stays as it is (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from jupyterhub_service.notebook_upgrade import (MAX_UPGRADE_BYTES, NotANotebook, upgrade,
                                                 upgraded_copy, upgraded_file)

DATA = Path(__file__).resolve().parents[2] / "ckanext" / "jupyternotebook" / "tests" / "data"


def data(name: str) -> dict:
    return json.loads((DATA / name).read_bytes())


def sources(nb) -> list[str]:
    return [c.source for c in nb.cells]


def test_a_v3_notebook_is_upgraded_to_a_valid_v4_one():
    nb, changed = upgrade(data("v3_rainfall.ipynb"))
    assert changed
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    nbformat.validate(nb)
    assert sources(nb)[0] == "# Rainfall by station"
    assert nb.cells[3].outputs[0].output_type == "execute_result"
    assert nb.cells[4].outputs[0].data["image/png"]


def test_a_v3_notebook_without_metadata_is_upgraded():
    nb, changed = upgrade(data("v3_no_metadata.ipynb"))
    assert changed and nb.nbformat == 4
    nbformat.validate(nb)
    assert "without notebook metadata" in sources(nb)[1]


def test_v3_notebooks_without_worksheets_or_cells_are_empty_v4_notebooks():
    for doc in ({"metadata": {"name": ""}, "nbformat": 3, "nbformat_minor": 0},
                {"metadata": {}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"metadata": {}}]}):
        nb, _ = upgrade(doc)
        nbformat.validate(nb)
        assert nb.cells == []


def test_duplicate_invalid_and_overlong_cell_ids_get_new_valid_unique_ids():
    original = data("v4_bad_cell_ids.ipynb")
    nb, changed = upgrade(json.loads(json.dumps(original)))
    assert changed
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == 4
    assert ids[0] == "same-id"  # the first holder keeps it
    assert sources(nb) == ["".join(c["source"]) for c in original["cells"]]


def test_invalid_v4_5_metadata_is_stripped_and_the_cells_kept():
    nb, changed = upgrade(data("v4_5_invalid_metadata.ipynb"))
    assert changed
    nbformat.validate(nb)
    assert "kernelspec" not in nb.metadata and "authors" not in nb.metadata
    assert sources(nb) == ["# Odd metadata", "y = 2"]


def test_a_v4_notebook_without_minor_version_or_cell_fields_is_repaired():
    doc = {"nbformat": 4, "metadata": {},
           "cells": [{"cell_type": "markdown", "metadata": {}},
                     {"cell_type": "heading", "level": 2, "metadata": {}, "source": "Part two"},
                     {"cell_type": "code", "source": "1",
                      "outputs": [{"output_type": "bad stream"},
                                  {"output_type": "stream", "name": "stdout", "text": "1"}]}]}
    nb, changed = upgrade(doc)
    assert changed
    nbformat.validate(nb)
    assert sources(nb) == ["", "## Part two", "1"]
    assert [o.output_type for o in nb.cells[2].outputs] == ["stream"]


def test_a_valid_v4_notebook_is_unchanged_and_its_copy_byte_identical():
    raw = (DATA / "demo.ipynb").read_bytes()
    _nb, changed = upgrade(json.loads(raw))
    assert not changed
    assert upgraded_copy(raw) is None


@pytest.mark.parametrize("doc", [
    {"hello": "world"},
    ["nbformat", 4],
    {"nbformat": "4", "cells": []},
    {"nbformat": 99, "nbformat_minor": 0, "cells": [], "metadata": {}},
    {"nbformat": 4, "nbformat_minor": 5, "cells": "nope", "metadata": {}},
    {"nbformat": 4, "nbformat_minor": 5, "cells": ["nope"], "metadata": {}},
    {"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code", "source": "",
                                                     "metadata": {}, "outputs": 3}],
     "metadata": {}},
])
def test_json_that_is_not_a_notebook_is_refused(doc):
    with pytest.raises(NotANotebook):
        upgrade(doc)


def test_the_session_copy_of_a_v3_notebook_is_a_valid_v4_file(tmp_path):
    src = tmp_path / "old.ipynb"
    src.write_bytes((DATA / "v3_rainfall.ipynb").read_bytes())
    copy = upgraded_file(src)
    nb = nbformat.reads(copy.decode(), as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert copy.endswith(b"\n")


def test_what_is_not_a_notebook_or_too_large_is_copied_as_it_is(tmp_path):
    garbage = tmp_path / "garbage.ipynb"
    garbage.write_bytes(bytes(range(256)) * 4)
    assert upgraded_file(garbage) is None
    assert upgraded_copy((DATA / "not_a_notebook.json").read_bytes()) is None
    assert upgraded_copy(b"[" * 100_000 + b"]" * 100_000) is None  # too deep for the parser
    big = tmp_path / "big.ipynb"
    with open(big, "wb") as f:
        f.write((DATA / "v3_rainfall.ipynb").read_bytes())
        f.truncate(MAX_UPGRADE_BYTES + 1)  # sparse: the size alone decides
    assert upgraded_file(big) is None
