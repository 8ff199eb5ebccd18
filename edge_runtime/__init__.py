"""The lean runtime: bundles, frame sources, pre/post-processing, backends. Never imports torch."""
