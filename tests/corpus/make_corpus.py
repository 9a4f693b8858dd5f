"""The bad-input corpus of issue 12: every case, and a script that writes their inputs.

`CASES` lists every kind of bad input (more than 100), each with its expected outcome; the
cases live in the ``cases_*`` modules, the frame (`Case`, `Scenario`, `Ctx`) in
`tests.corpus.corpus`. Every input is made by code at test time: the repository holds no
binary test files. `tests/corpus/test_corpus.py` runs them all through the real CLI.

Run ``python -m tests.corpus.make_corpus OUT`` to write every case's inputs under
``OUT/<case>/``, with ``OUT/cases.json`` listing the command and the expected outcome of
each, to try them by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.corpus import (  # noqa: F401  (each module registers its cases)
    cases_files,
    cases_options,
    cases_paths,
    cases_records,
    cases_resume,
)
from tests.corpus.corpus import CASES, Ctx
from tests.corpus.kit import Kit

__all__ = ["CASES", "main"]


def main(out: Path) -> None:
    """Write every case's inputs under ``out/<case>`` and list them in ``out/cases.json``."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give an empty or new folder")
    kit = Kit.build(out / "_kit")
    listing = []
    for item in CASES:
        root = out / item.name
        root.mkdir(parents=True)
        scenario = item.build(Ctx(kit, root))
        listing.append(
            {
                "case": item.name,
                "command": ["invprotect", *scenario.args],
                "exit_codes": list(item.exit_codes),
                "outcome": item.outcome,
            }
        )
    (out / "cases.json").write_text(json.dumps(listing, indent=1) + "\n")
    print(f"{len(CASES)} cases written to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.corpus.make_corpus OUT")
    main(Path(sys.argv[1]))
