"""Canonicalization passes, one per file."""
