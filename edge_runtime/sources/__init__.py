"""Frame sources: cameras (V4L2, CSI, RTSP), video files and image folders, as one stream of items.

`spec.open_source` opens what the CLI names; `items` holds what every source yields; `stream` hands items to the
frame loop; `live`, `cameras`, `files` and `capture` read them. A frame the pipeline had no time for is reported
as dropped, never lost silently.
"""
