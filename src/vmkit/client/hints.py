"""vmkit's messages say what to do next as the ``vmkit`` command does it ("'vmkit ls' lists
them"); an SDK user gets the Client's call beside it ("'vmkit ls' / Client.list_vms() lists
them"). vmkitd writes one message for both; the SDK adds its half to what it raises
(Connection._send), the CLI leaves it as it is. tests/unit/test_sdk_hints.py finds every
'vmkit ...' a message can name and checks that it is in COMMANDS."""

from __future__ import annotations

import re

# A command as messages name it (its words, then flags that pick another call) -> the
# Client's call that does it, or None where the SDK has none (the message stays as it is).
COMMANDS: dict[str, str | None] = {
    "ls": "list_vms", "inspect": "get_vm", "run": "run", "start": "start_vm",
    "stop": "stop_vm", "kill": "kill_vm", "restart": "restart_vm", "resume": "resume_vm",
    "pause": "pause_vm", "rm": "remove_vm", "resize": "resize_vm", "update": "update_vm",
    "logs": "logs", "exec": "exec", "cp": "read_file / write_file",
    "console": "console", "fork": "fork", "export": "export_vm", "import": "import_vm",
    "migrate": "migrate", "migrate --cancel": "cancel_migration", "stats": "stats",
    "capture": "start_capture", "capture --stop": "stop_capture", "vnc": "vnc_display",
    "image build": "build_image", "image import": "import_image", "image rm": "remove_image",
    "snapshot ls": "list_snapshots", "snapshot rm": "remove_snapshot",
    "template ls": "list_templates", "template rm": "remove_template",
    "net ls": "list_networks", "net create": "create_network",
    "backup ls": "list_backups", "backup rm": "remove_backup", "backup verify": "verify_backup",
    "backup repo ls": "list_backup_repos", "backup repo add": "add_backup_repo", "backup repo rm": "remove_backup_repo",
    "backup schedule ls": "list_backup_schedules", "cluster hosts": "cluster_hosts",
    "host add": None, "host ls": None, "host token": None, "ssh": None, "ui": None,
    "daemon install": None, "completion": None, "cluster up": None, "cluster down": None,
}
_MENTION = re.compile(r"'vmkit ([^']*)'")
_GLOBAL = re.compile(r"^(?:--(?:host|cluster) \S+ )+")  # 'vmkit --host lab rm': rm


def command_of(mention: str) -> str | None:
    """The COMMANDS key that the text after 'vmkit ' in a mention names, or None."""
    words = _GLOBAL.sub("", mention).split()
    for key in sorted(COMMANDS, key=len, reverse=True):
        parts = key.split()
        names = [p for p in parts if not p.startswith("-")]
        if words[:len(names)] == names and all(p in words for p in parts if p.startswith("-")):
            return key
    return None


def with_sdk_calls(message: str) -> str:
    """``message`` with the Client's call after each 'vmkit ...' that has one."""
    def add(m: re.Match[str]) -> str:
        key = command_of(m.group(1))
        call = COMMANDS.get(key) if key else None
        if not call:
            return m.group(0)
        return " / ".join([m.group(0), *(f"Client.{c}()" for c in call.split(" / "))])
    return _MENTION.sub(add, message)
