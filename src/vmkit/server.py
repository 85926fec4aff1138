"""The composition root: build the core, then the services on it, and nothing else.

vmkitd makes one ``Server`` per VMKIT_HOME and hands it to the API, whose routers each take
the part they serve. Nothing here decides anything about VMs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .cluster.membership import ClusterConfig, Membership
from .core.core import Core
from .networks.service import Networks
from .services.backups import Backups
from .services.display import Display
from .services.forensics.service import Forensics
from .services.migration import Migrations
from .services.portable.service import Portable
from .services.run import Runs
from .services.snapshots import Snapshots
from .services.stats import Stats


@dataclass(frozen=True)
class Server:
    """Everything vmkitd serves: the core and the services built on it."""

    core: Core
    networks: Networks
    snapshots: Snapshots
    migrations: Migrations
    portable: Portable
    forensics: Forensics
    stats: Stats
    display: Display
    runs: Runs
    backups: Backups
    cluster: Membership | None = None  # vmkitd --cluster: this host's membership

    @classmethod
    async def open(cls, home: Path, cluster: ClusterConfig | None = None) -> Server:
        """Open VMKIT_HOME ``home``: build the core and the services (which register their
        hooks with it), then re-attach to its running VMs and recover what a stopped daemon
        left half done; with ``cluster``, join it."""
        core = await Core.open(home)
        snapshots = Snapshots(core)
        server = cls(core, core.networks, snapshots, Migrations(core), Portable(core),
                     Forensics(core), Stats(core), Display(core), Runs(core, snapshots),
                     Backups(core))
        await core.recover()
        server.backups.start()  # its schedules run once the VMs are re-attached
        if cluster is not None:
            try:
                member = await Membership.join(core, cluster)
            except BaseException:
                await core.close()
                raise
            server = dataclasses.replace(server, cluster=member)
        return server

    async def close(self) -> None:
        """Stop serving; every VM keeps running and the next daemon re-attaches to it."""
        if self.cluster is not None:
            await self.cluster.leave()
        await self.core.close()
