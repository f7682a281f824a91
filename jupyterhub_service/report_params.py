"""A report run's parameters: checked, and put into the notebook.

Two conventions declare them. Papermill's: a code cell tagged
``parameters`` holds the defaults, and papermill injects a cell after it
with the run's values (``papermill_parameters`` hands it those). Colab's
forms: an assignment with a ``# @param`` comment, e.g.
``year = 2020  # @param {type:"integer"}`` or ``region = "north"  # @param
["north", "south"]``; its value is rewritten in place here, before the run,
and checked against the declared type or choices.

Values are JSON scalars (string, number, boolean, null) under Python
identifiers; anything else is ``400 invalid_parameters``.
"""

from __future__ import annotations

import ast
import keyword
import re

from .errors import BridgeError

# `name = value  # @param ...`; the value stops at the first `# @param`
PARAM_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)"
    r"(?P<value>.*?)(?P<comment>[ \t]*#[ \t]*@param\b(?P<spec>.*))$"
)
COLAB_TYPE = re.compile(r"""type\s*:\s*["']?(?P<type>[A-Za-z]+)""")
MAX_PARAMETERS = 100
MAX_VALUE_LENGTH = 10_000


def invalid(message: str) -> BridgeError:
    return BridgeError(400, "invalid_parameters", message)


def validate(parameters) -> dict:
    """The parameters of a request, or ``invalid_parameters``."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise invalid("parameters must be a JSON object of name: value")
    if len(parameters) > MAX_PARAMETERS:
        raise invalid(f"at most {MAX_PARAMETERS} parameters")
    for name, value in parameters.items():
        if not name.isidentifier() or keyword.iskeyword(name):
            raise invalid(f"parameter name {name!r} is not a Python identifier")
        if isinstance(value, (dict, list)):
            raise invalid(f"parameter {name!r}: values are strings, numbers, true, false or "
                          f"null, not {type(value).__name__}s")
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            raise invalid(f"parameter {name!r} is longer than {MAX_VALUE_LENGTH} characters")
    return dict(parameters)


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _check_colab(name: str, value, spec: str) -> None:
    """A value against the form field's declaration: a type, or a list of
    choices (free input allowed with ``allow-input: true``)."""
    spec = spec.strip()
    if spec.startswith("["):
        end = spec.find("]")
        try:
            choices = ast.literal_eval(spec[:end + 1]) if end > 0 else None
        except (ValueError, SyntaxError):
            choices = None
        if (isinstance(choices, list) and value not in choices
                and not re.search(r"allow-input\s*:\s*true", spec)):
            raise invalid(f"parameter {name!r} must be one of {choices!r}, not {value!r}")
        return
    m = COLAB_TYPE.search(spec)
    kind = m.group("type").lower() if m else None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": is_number,
        "slider": is_number,
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "date": isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""),
        "raw": isinstance(value, str) and "\n" not in value and "\r" not in value,
    }.get(kind, True)
    if not ok:
        wanted = {"date": "a date (YYYY-MM-DD)", "raw": "one line of code",
                  "number": "a number", "slider": "a number",
                  "integer": "an integer", "boolean": "true or false",
                  "string": "a string"}[kind]
        raise invalid(f"parameter {name!r} is declared {kind} (# @param): "
                      f"it needs {wanted}, not {value!r}")


def _literal(value, spec: str) -> str:
    if isinstance(value, str) and COLAB_TYPE.search(spec) and \
            COLAB_TYPE.search(spec).group("type").lower() == "raw":
        return value  # Colab's raw fields are code, as the publisher typed it
    return repr(value)  # str, int, float, bool, None: a Python literal


def apply_colab(notebook: dict, parameters: dict) -> tuple[dict, set[str]]:
    """Rewrite ``# @param`` assignments of the given names in every code
    cell; returns the notebook and the names rewritten. Checks each value
    against its declaration (``invalid_parameters``)."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise BridgeError(422, "invalid_notebook", "The notebook has no cells.")
    applied: set[str] = set()
    for cell in notebook["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        lines = _cell_source(cell).splitlines(keepends=True)
        changed = False
        for i, line in enumerate(lines):
            body = line.rstrip("\r\n")
            m = PARAM_LINE.match(body)
            if not m or m.group("name") not in parameters:
                continue
            name, spec = m.group("name"), m.group("spec")
            value = parameters[name]
            _check_colab(name, value, spec)
            lines[i] = (m.group("indent") + name + m.group("eq") + _literal(value, spec)
                        + m.group("comment") + line[len(body):])
            applied.add(name)
            changed = True
        if changed:
            cell["source"] = "".join(lines)
    return notebook, applied


def papermill_parameters(parameters: dict, colab_applied: set[str]) -> dict:
    """What papermill injects after the ``parameters`` cell: the parameters
    no ``# @param`` line took."""
    return {k: v for k, v in parameters.items() if k not in colab_applied}
