"""What the line teaches the model, torch-free: reviewed frames, a refit through its gate into a new bundle version,
the version the line runs (followed by the running runtime), rollback, and the audit log (`store`, `refit`,
`follow`)."""
