"""Many vmkit hosts as one cluster, whose shared state lives in etcd (etcd.py): membership
under a lease (membership.py) and the demo cluster in network namespaces (demo.py)."""
