"""Print the declared minimum versions as pins (``msgspec==0.18.6``), one per line.

Reads ``pyproject.toml``: every ``>=`` bound of the dependencies and of the extras named on
the command line (default: ``testing metrics postgres``), plus pytest's. A requirement
without a lower bound is an error: an untested floor is a guess.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_BOUND = re.compile(r"^([A-Za-z0-9_.-]+(?:\[[A-Za-z0-9_,.-]+\])?)\s*>=\s*([0-9][0-9A-Za-z.]*)$")


def pins(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    wanted += [r for r in project["optional-dependencies"]["test"] if r.startswith("pytest>=")]
    out = []
    for requirement in wanted:
        found = _BOUND.match(requirement.split(";")[0].strip())
        if found is None:
            raise SystemExit(f"{requirement!r} has no lower bound to test")
        name, version = found.groups()
        out.append(f"{name}=={version}")
    return out


if __name__ == "__main__":
    print("\n".join(pins(sys.argv[1:] or ["testing", "metrics", "postgres"])))
