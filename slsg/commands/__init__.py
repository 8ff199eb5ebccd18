"""One module per `slsg` command; see `slsg.cli`."""
