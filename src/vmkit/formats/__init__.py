"""File formats shared by the client and the server: the VM bundle and its tar stream."""
