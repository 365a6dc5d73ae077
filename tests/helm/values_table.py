"""The chart README's values table, generated from values.schema.json and values.yaml.

``python -m tests.helm.values_table`` prints it (``--write`` puts it into the README, between
its markers); tests/helm/test_values_schema.py checks that
the README holds exactly this table, so a value added to the schema is documented or fails.
One row per leaf of the schema (objects whose properties the schema lists are walked into).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Final

import yaml

from tests.helm.chart import CHART

# Objects the table shows as one value (their fields are Kubernetes' own), not walked into.
WHOLE: Final = {"resources", "namespaceSelector", "objectSelector"}
LONGEST_DEFAULT: Final = 60
BEGIN: Final = "<!-- values table: python -m tests.helm.values_table -->"
END: Final = "<!-- end of values table -->"


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def defaults() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "enum" in node.get("items", {}):
        return "list of " + _type(node["items"])
    return str(kind)


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    text = json.dumps(value, separators=(", ", ": "))
    if len(text) > LONGEST_DEFAULT:
        return "see values.yaml"
    return f"`{text}`".replace("|", "\\|")


def rows(node: dict[str, Any], values: Any, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        value = values.get(name) if isinstance(values, dict) else None
        if child.get("type") == "object" and "properties" in child and name not in WHOLE:
            lines += rows(child, value, f"{path}.")
            continue
        if path == "global":
            continue
        described = child.get("description", "")
        lines.append(f"| `{path}` | {_type(child)} | {_default(value)} | {described} |")
    return lines


def table() -> str:
    head = ["| value | type | default | what it sets |", "|---|---|---|---|"]
    return "\n".join([BEGIN, *head, *rows(schema(), defaults()), END])


def write_readme() -> None:
    """Replace the table between the README's markers with :func:`table`."""
    readme = CHART / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + table() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_readme()
    else:
        print(table())  # noqa: T201 - the point of the command
