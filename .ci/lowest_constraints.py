"""Print pip constraints that pin every dependency of pyproject.toml, its test extra included,
to its floor: ``name>=X`` becomes ``name==X`` (an environment marker is kept).

.ci/run-lowest installs the project under these, so each floor written in pyproject.toml is one
the suite ran with. A requirement without a floor is an error: it would not be tested.
"""

import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)\s*[^;]*?>=\s*(?P<floor>[^,;\s]+)[^;]*(?P<marker>;.*)?$")


def lowest_constraints(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    constraints = []
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        match = FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"{pyproject}: {requirement!r} has no floor (>=): "
                             "every dependency needs one, installed and tested by .ci/run-lowest")
        constraints.append(f"{match['name']}=={match['floor']}{match['marker'] or ''}")
    return constraints


if __name__ == "__main__":
    print("\n".join(lowest_constraints(Path(sys.argv[1]))))
