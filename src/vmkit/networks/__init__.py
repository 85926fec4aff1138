"""A VM's network: user-mode NAT and port forwards (ports), private networks (service),
and vmkitd's own switch for them when it cannot make bridges (switch)."""
