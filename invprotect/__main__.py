"""``python -m invprotect`` runs the command line."""

from invprotect.cli import app

app()
