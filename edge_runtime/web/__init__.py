"""The line-side page (`slsg-edge run --web`): what the inspection sees, the rejects to review, the model's versions.

`view` (what the page shows, fed as a sink), `metrics` (Prometheus, a sink), `access` (who may do what), `teacher`
(reviews, refit and rollback through `edge_runtime.teach`), `server` (HTTP, server-sent events, TLS) and `page`
(them together for one run). The page, its script and its style are in `static/`: nothing comes from a CDN.
"""
