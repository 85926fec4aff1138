"""Backups into borg repositories: service.py (what the API calls), make.py (one backup),
job.py (QEMU's backup job and dirty bitmaps), stream.py (the bytes borg gets), borg.py
(borg's command line), schedules.py (schedules and retention)."""

from .service import Backups

__all__ = ["Backups"]
