"""Report parameters on real notebook JSON: Colab ``# @param`` lines are
rewritten in place and checked; papermill gets the rest; malformed values
are refused with a clear message."""

from __future__ import annotations

import json

import nbformat
import pytest

from jupyterhub_service import report_params
from jupyterhub_service.errors import BridgeError

# a Colab notebook as Colab saves it: source as a list of lines, form
# fields of every kind, one indented, one in a markdown cell (never code)
COLAB_NOTEBOOK = json.loads(r"""
{
 "nbformat": 4, "nbformat_minor": 0,
 "metadata": {"colab": {"provenance": []},
              "kernelspec": {"name": "python3", "display_name": "Python 3"}},
 "cells": [
  {"cell_type": "markdown", "metadata": {}, "source": ["year = 1999  # @param {type:\"integer\"}"]},
  {"cell_type": "code", "execution_count": null, "metadata": {"cellView": "form"}, "outputs": [],
   "source": [
    "#@title Settings\n",
    "year = 2020  # @param {type:\"integer\"}\n",
    "threshold = 0.5 #@param {type:\"slider\", min:0, max:1, step:0.1}\n",
    "city = \"Oslo\"  # @param {type:\"string\"}\n",
    "region = 'north'  # @param [\"north\", \"south\"]\n",
    "label = 'x'  # @param [\"a\", \"b\"] {allow-input: true}\n",
    "enabled = False  # @param {type:\"boolean\"}\n",
    "day = '2024-01-31'  # @param {type:\"date\"}\n",
    "columns = ['a']  # @param {type:\"raw\"}\n",
    "if True:\n",
    "    depth = 3  # @param {type:\"number\"}\n",
    "untouched = 1  # @param {type:\"integer\"}"
   ]}
 ]
}
""")


def rewritten(parameters: dict) -> tuple[list[str], set[str]]:
    nb = json.loads(json.dumps(COLAB_NOTEBOOK))
    nb, applied = report_params.apply_colab(nb, parameters)
    return nb["cells"][1]["source"].splitlines(), applied


def refused(call) -> str:
    with pytest.raises(BridgeError) as info:
        call()
    assert info.value.status == 400 and info.value.code == "invalid_parameters"
    return info.value.message


def test_colab_fields_are_rewritten_in_place_keeping_their_declarations():
    lines, applied = rewritten({
        "year": 2031, "threshold": 0.8, "city": "Bergen \"west\"", "region": "south",
        "label": "free text", "enabled": True, "day": "2025-06-01",
        "columns": "['a', 'b']", "depth": 7,
    })
    assert lines == [
        "#@title Settings",
        "year = 2031  # @param {type:\"integer\"}",
        "threshold = 0.8 #@param {type:\"slider\", min:0, max:1, step:0.1}",
        "city = 'Bergen \"west\"'  # @param {type:\"string\"}",
        "region = 'south'  # @param [\"north\", \"south\"]",
        "label = 'free text'  # @param [\"a\", \"b\"] {allow-input: true}",
        "enabled = True  # @param {type:\"boolean\"}",
        "day = '2025-06-01'  # @param {type:\"date\"}",
        "columns = ['a', 'b']  # @param {type:\"raw\"}",
        "if True:",
        "    depth = 7  # @param {type:\"number\"}",
        "untouched = 1  # @param {type:\"integer\"}",
    ]
    assert applied == {"year", "threshold", "city", "region", "label", "enabled", "day",
                       "columns", "depth"}


def test_the_rewritten_notebook_still_runs_as_python_with_the_new_values():
    lines, _ = rewritten({"year": 2031, "city": "it's", "enabled": True})
    scope: dict = {}
    exec("\n".join(lines[1:]), scope)
    assert (scope["year"], scope["city"], scope["enabled"]) == (2031, "it's", True)


def test_markdown_cells_are_never_rewritten():
    nb = json.loads(json.dumps(COLAB_NOTEBOOK))
    nb, _ = report_params.apply_colab(nb, {"year": 2031})
    assert nb["cells"][0]["source"] == ["year = 1999  # @param {type:\"integer\"}"]


def test_a_notebook_read_by_nbformat_is_rewritten_too():
    nb = nbformat.reads(json.dumps(COLAB_NOTEBOOK), as_version=4)
    nb, applied = report_params.apply_colab(nb, {"year": 1})
    assert applied == {"year"}
    assert "year = 1  # @param" in nbformat.writes(nb)


def test_papermill_gets_only_what_no_param_line_took():
    assert report_params.papermill_parameters({"year": 1, "other": "x"}, {"year"}) == {"other": "x"}


@pytest.mark.parametrize("parameters, message", [
    ({"year": "2020"}, "parameter 'year' is declared integer (# @param): it needs an integer, "
                       "not '2020'"),
    ({"year": True}, "it needs an integer, not True"),
    ({"threshold": "high"}, "it needs a number"),
    ({"enabled": 1}, "it needs true or false"),
    ({"city": 5}, "it needs a string"),
    ({"day": "31/01/2024"}, "it needs a date (YYYY-MM-DD)"),
    ({"columns": "a\nimport os"}, "it needs one line of code"),
    ({"region": "east"}, "parameter 'region' must be one of ['north', 'south'], not 'east'"),
])
def test_a_value_that_does_not_fit_its_declaration_is_refused(parameters, message):
    assert message in refused(lambda: rewritten(parameters))


@pytest.mark.parametrize("parameters, message", [
    ([1, 2], "parameters must be a JSON object of name: value"),
    ({"year": {"a": 1}}, "parameter 'year': values are strings, numbers, true, false or null, "
                         "not dicts"),
    ({"year": [1]}, "not lists"),
    ({"1year": 1}, "parameter name '1year' is not a Python identifier"),
    ({"class": 1}, "parameter name 'class' is not a Python identifier"),
    ({"x": "y" * 10_001}, "parameter 'x' is longer than 10000 characters"),
])
def test_malformed_parameters_are_refused(parameters, message):
    assert message in refused(lambda: report_params.validate(parameters))


def test_scalars_and_no_parameters_are_accepted():
    assert report_params.validate(None) == {}
    values = {"a": 1, "b": 1.5, "c": "x", "d": True, "e": None}
    assert report_params.validate(values) == values
