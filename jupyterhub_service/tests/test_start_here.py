"""The generated start_here notebook, executed on real files with a real kernel."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from jupyterhub_service.start_here import build_start_here, write_notebook

DATASET = {"name": "trees", "title": "City trees", "url": "http://127.0.0.1:5000/dataset/trees"}
FRAME = pd.DataFrame({"species": ["oak", "lime", "élm"], "height": [12.5, 20.0, 8.25]})
GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [4.9, 52.4]}, "properties": {"n": 1}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.1, 52.1]}, "properties": {"n": 2}},
    ],
}


def _write_csv(path):
    FRAME.to_csv(path, index=False)


def _write_latin1_csv(path):
    FRAME.to_csv(path, index=False, encoding="latin-1")


def _write_tsv(path):
    FRAME.to_csv(path, sep="\t", index=False)


def _write_xlsx(path):
    FRAME.to_excel(path, index=False)


def _write_json(path):
    FRAME.to_json(path, orient="records")


def _write_nested_json(path):
    path.write_text(json.dumps({"meta": {"source": "x"}, "items": [1, 2, {"a": None}], "scalar": 3}))


def _write_geojson(path):
    path.write_text(json.dumps(GEOJSON))


def _write_parquet(path):
    FRAME.to_parquet(path)


def _write_binary(path):
    path.write_bytes(bytes(range(256)))


FILES = {
    "CSV": ("trees.csv", _write_csv),
    "Latin-1 CSV": ("trees-latin1.csv", _write_latin1_csv),
    "TSV": ("trees.tsv", _write_tsv),
    "XLSX": ("trees.xlsx", _write_xlsx),
    "JSON": ("trees.json", _write_json),
    "nested JSON": ("nested.json", _write_nested_json),
    "GeoJSON": ("trees.geojson", _write_geojson),
    "Parquet": ("trees.parquet", _write_parquet),
    "unknown": ("blob.bin", _write_binary),
}


def _home_with(tmp_path, labels):
    (tmp_path / "data").mkdir()
    files = []
    for label in labels:
        filename, write = FILES[label]
        write(tmp_path / "data" / filename)
        files.append({"filename": filename, "format": label.split()[-1], "name": f"Trees ({label})"})
    return files


def _execute(nb, home):
    path = home / "start_here.ipynb"
    write_notebook(nb, path)
    node = nbformat.read(path, as_version=4)
    NotebookClient(node, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(home)}}).execute()
    return node


def _outputs(node):
    return [o for cell in node.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.mark.parametrize("label", list(FILES))
def test_start_here_code_runs_without_error_for(label, tmp_path):
    files = _home_with(tmp_path, [label])
    node = _execute(build_start_here(DATASET, files), tmp_path)
    outputs = _outputs(node)
    assert not [o for o in outputs if o.output_type == "error"]
    assert outputs  # each file's cell shows something


def test_notebook_for_every_format_at_once_is_valid_and_runs(tmp_path):
    files = _home_with(tmp_path, list(FILES))
    nb = build_start_here(DATASET, files)
    nbformat.validate(nbformat.from_dict(nb))
    node = _execute(nb, tmp_path)
    assert not [o for o in _outputs(node) if o.output_type == "error"]


def test_tables_are_loaded_with_their_values(tmp_path):
    files = _home_with(tmp_path, ["CSV", "TSV", "XLSX", "Parquet"])
    node = _execute(build_start_here(DATASET, files), tmp_path)
    tables = [o for o in _outputs(node) if o.output_type == "execute_result"]
    assert len(tables) == 4
    assert all("lime" in o.data["text/plain"] and "20.0" in o.data["text/plain"] for o in tables)


def test_geojson_cell_prints_the_feature_count(tmp_path):
    files = _home_with(tmp_path, ["GeoJSON"])
    node = _execute(build_start_here(DATASET, files), tmp_path)
    assert "2 features" in "".join(o.get("text", "") for o in _outputs(node))


def test_unknown_format_shows_path_and_size(tmp_path):
    files = _home_with(tmp_path, ["unknown"])
    node = _execute(build_start_here(DATASET, files), tmp_path)
    assert "data/blob.bin 256 bytes" in "".join(o.get("text", "") for o in _outputs(node))


def test_title_cell_links_the_dataset_and_says_the_session_is_temporary():
    nb = build_start_here(DATASET, [])
    intro = nb["cells"][0]["source"]
    assert intro.startswith("# City trees")
    assert "(<http://127.0.0.1:5000/dataset/trees>)" in intro
    assert "temporary" in intro and "discarded" in intro


def test_failed_resources_are_listed_with_their_reason_and_get_no_code():
    files = [{"filename": "big.csv", "format": "CSV", "name": "Big", "error": "larger than the 2 GiB limit"}]
    nb = build_start_here(DATASET, files)
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "markdown"]
    assert "Big: larger than the 2 GiB limit" in nb["cells"][-1]["source"]


def test_user_text_is_escaped_in_markdown_and_absent_from_code():
    dataset = {"title": "<img src=x onerror=alert(1)> [x](javascript:alert(1))", "url": "javascript:alert(1)"}
    files = [{"filename": "a.csv", "format": "CSV", "name": "x\nimport os; os.system('id')"}]
    nb = build_start_here(dataset, files)
    markdown = "".join(c["source"] for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "".join(c["source"] for c in nb["cells"] if c["cell_type"] == "code")
    assert "<img" not in markdown and "](javascript:" not in markdown
    assert "os.system" not in code


def test_file_names_with_quotes_become_valid_python(tmp_path):
    (tmp_path / "data").mkdir()
    _write_csv(tmp_path / "data" / "it's \"q\".csv")
    files = [{"filename": "it's \"q\".csv", "format": "CSV", "name": "quotes"}]
    node = _execute(build_start_here(DATASET, files), tmp_path)
    assert not [o for o in _outputs(node) if o.output_type == "error"]
