"""The file side: image files in and out, protected PNGs, and runs over whole trees.

Modules, from the bottom up (each imports only those above it in this list):

- `invprotect.files.atomic`: atomic writes (temporary file, then rename) and the removal
  of the temporaries an interrupted run left.
- `invprotect.files.png`: PNG bytes with private chunks (write, parse, insert).
- `invprotect.files.images`: decoding image files (refusing what would not come back
  whole), their metadata, RGB pixels, padding, digests, and rebuilding the original mode.
- `invprotect.files.protected`: one protected PNG: open it and its record, rebuild and
  check its original, or approximate a changed one.
- `invprotect.files.locks`: lock files of a destination (one run, or one set of shards).
- `invprotect.files.manifest`: the manifest of a destination and the one resume rule.
- `invprotect.files.tree`: the one tree walker (jobs, destination, batches, report).
- `invprotect.files.protect`, `invprotect.files.recover`, `invprotect.files.purify`: the
  three runs over a tree (`protect_tree`, `recover_tree`, `purify_tree`).

This package imports none of its modules: `invprotect.checkpoint` uses the atomic writes
without loading the rest.
"""
