"""The ``invprotect`` command line: ``invprotect --help`` lists the commands.

`run` is the console script (with the exit codes of `invprotect.cli.app`); `app` is the
Typer application, for tests and embedding.
"""

# Importing a command module registers its commands; ``invprotect --help`` lists them in
# this order (train-targets before train: the order of the life cycle).
# isort: off
from invprotect.cli import defences as _defences  # noqa: F401
from invprotect.cli import demo as _demo  # noqa: F401
from invprotect.cli import pirate as _pirate  # noqa: F401
from invprotect.cli import targets as _targets  # noqa: F401
from invprotect.cli import protector as _protector  # noqa: F401
from invprotect.cli import verify as _verify  # noqa: F401
# isort: on
from invprotect.cli.app import app, run

__all__ = ["app", "run"]
