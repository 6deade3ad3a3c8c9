"""``python -m builder.errors`` prints docs/errors.md, written from the error classes."""

from builder.errors.catalogue import markdown

print(markdown(), end="")
