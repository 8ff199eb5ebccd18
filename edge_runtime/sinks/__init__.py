"""Where judgements go: the event log first (durable, one line per frame), then the line's outputs.

One module per output: `eventlog` (JSONL, rotated, fsynced), `evidence` (NG images under a disk quota, written off
the frame loop), `mqtt`, `modbus` (a PLC over Modbus TCP), `webhook`, `window` (`--show`), `counters` (what the
dashboard and the summary read) and `systemd` (notify and watchdog pings). `fanout` runs each one isolated in its
own thread with a bounded queue, so one that fails reports a `sink_error` line and the line keeps going.
"""
