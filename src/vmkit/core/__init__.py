"""The core: the one owner of VM records, their locks, their QEMU processes and boot media.

Every way a VM comes to be here (create, fork, restore, import, migration arrival) passes
through its one register-and-launch path. The core imports no service; services register
the hooks it calls (recovery at start, what keeps a disk layer alive).
"""
