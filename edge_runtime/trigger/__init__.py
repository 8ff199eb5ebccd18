"""Triggered inspection: one trigger = one part = one frame = one answer that names the part.

A line does not judge a free-running stream: a photo-eye or the PLC asks for one part at a time, and acts on the
answer for *that* part. `requests` holds what a trigger says (`PartRequest`) and the triggers that say it (a queue
for programs and tests, lines of text such as stdin); `frames` turns a frame source and a trigger into a stream
whose every frame carries its part and a deadline. A part without a frame, or whose answer is not out by the
deadline, is NO-DECISION for that part on every output — never silence, never another part's verdict.
"""
