"""The bad-input corpus of issue 12: inputs made from code, run through the real CLI."""
