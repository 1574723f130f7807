"""``make bench-hub``: dfget hf:// -r vs hf download from the same local test hub."""
