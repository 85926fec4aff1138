"""Forensics: memory dumps, disk diffs against the image, packet captures."""
