"""The `modelwatch` command: developer tooling that never ships to Lambda."""
