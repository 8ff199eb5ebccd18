"""`python -m slsg` = the `slsg` CLI (also what torchrun launches)."""

from slsg.cli import app

if __name__ == "__main__":
    app()
