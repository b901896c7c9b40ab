"""Command-line interface: argument parsing and presentation only; the work lives in the library."""
