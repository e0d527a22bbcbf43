"""The `ecomine` command line: one module per verb (typer), mounted by `main`.

The top floor: it parses arguments, calls the verb's package, and turns a known error into one
line and a non-zero exit. Nothing below imports it.
"""
