"""VMs as portable files: export a VM to one file, import one (or a plain disk) as a VM.

Formats: vmkit's own (bundle.py: disk, spec and optionally the live state, with checksums),
OVA (ova.py: OVF 1.0 + streamOptimized VMDK) and libvirt (libvirt.py: domain XML + qcow2 +
kernel). service.py does the work on the host; tarstream.py writes any of them as a stream.
"""
