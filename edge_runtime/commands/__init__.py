"""One module per `slsg-edge` command; see `edge_runtime.cli`."""
