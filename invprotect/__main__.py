"""``python -m invprotect`` runs the command line (with the exit codes of `invprotect.cli.run`)."""

from invprotect.cli import run

run()
