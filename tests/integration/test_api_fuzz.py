"""The REST API under schemathesis, generated from its own OpenAPI schema: no 5xx, ever.

Bounded (6 examples per operation, about 300 requests in all) against a real vmkitd on
TCP with its token. The bigger run, outside CI (unseeded, every check, its summary printed):

    VMKIT_FUZZ_EXAMPLES=100 VMKIT_FUZZ_CHECKS=all VMKIT_FUZZ_SEED= \
        python -m pytest tests/integration/test_api_fuzz.py -s
Creating VMs (/v1/vms, /v1/runs), building images, making the 'run --fast' template and
creating private networks are left out: generated requests would boot guests with outbound
NAT, rebuild images, or add bridges and firewall rules to this host; their validation has its
own tests (tests/e2e/test_cli.py, tests/unit/test_api_validation.py, test_networks.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import free_port

SCHEMATHESIS = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]
EXAMPLES = os.environ.get("VMKIT_FUZZ_EXAMPLES", "6")
CHECKS = os.environ.get("VMKIT_FUZZ_CHECKS", "not_a_server_error")
SEED = os.environ.get("VMKIT_FUZZ_SEED", "1")  # empty: a new seed each run


def fuzz(port: int, token: str, *selection: str) -> subprocess.CompletedProcess[str]:
    seed = ["--seed", SEED] if SEED else []
    run = subprocess.run(
        [*SCHEMATHESIS, "run", f"http://127.0.0.1:{port}/openapi.json",
         "-H", f"Authorization: Bearer {token}", *selection,
         "--max-examples", EXAMPLES, "--checks", CHECKS, *seed],
        capture_output=True, text=True, timeout=600 * max(1, int(EXAMPLES) // 6))
    print(run.stdout)  # the findings and the summary, for pytest -s
    return run


def test_no_server_errors(own_daemon) -> None:
    pytest.importorskip("schemathesis")
    port = free_port()
    # Its own copy of the images: a generated DELETE must not touch the session's image.
    d = own_daemon(copy_images=True, args=("--listen", f"127.0.0.1:{port}"))
    token = (d.home / "run" / "token").read_text().strip()
    with d.client() as c:  # a running VM that must come through the fuzzing unharmed
        c.create_vm("fuzzed", network="none")
    # /v1/events streams for as long as the daemon runs: nothing for a fuzzer to finish.
    every_other_method = fuzz(port, token, "--exclude-path", "/v1/vms", "--exclude-path",
                              "/v1/events", "--exclude-method", "POST")
    assert every_other_method.returncode == 0, every_other_method.stdout[-3000:]
    actions = fuzz(port, token, "--exclude-path", "/v1/vms", "--exclude-path", "/v1/runs",
                   "--exclude-path", "/v1/images/{name}/build", "--exclude-path", "/v1/templates/fast",
                   "--exclude-path", "/v1/networks", "--include-method", "POST")
    assert actions.returncode == 0, actions.stdout[-3000:]
    with d.client() as c:  # nothing was damaged: the VM still answers, the image is intact
        assert c.exec("fuzzed", ["true"]).exit_code == 0
        assert [i["name"] for i in c.list_images()] == ["tiny"]
