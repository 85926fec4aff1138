"""Services over the core: snapshots, migration, export/import, forensics, stats, display.

Each depends on the core (and the layers below it), never on another service.
"""
