"""`python -m edge_runtime` = the `slsg-edge` CLI."""

from edge_runtime.cli import app

if __name__ == "__main__":
    app()
