"""The node's network: every address belongs to it, and nothing is routed off this machine.

- The node IP is a /32 the node adds to `lo` (the kernel here has no `dummy` link type, and the
  kubelet refuses a 127.x node IP).
- Pods sit on the node's own bridge, configured by a CNI conflist in the node's own directory
  (other packages drop theirs into /etc/cni/net.d, and containerd reads the first it finds), with
  `ipMasq: false` (no NAT to the outside) and `hairpinMode: true` (a Pod can reach itself
  through its own Service).
- Guards, because the bridge plugin turns `net.ipv4.ip_forward` on: forwarded traffic is dropped
  unless it enters and leaves through the node's bridge; host traffic to the Pod range must leave
  through the bridge and nothing may leave for the Service range un-DNATed (in `mangle
  POSTROUTING`: `filter OUTPUT` still sees the route chosen before kube-proxy's DNAT, and would
  drop the API server's good calls to the webhook); the API server's port answers only on `lo`
  and the bridge.

Each change is recorded before it is made; `record.tear_down` undoes it.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.support.cluster import record

NODE_IP: Final = "10.255.0.1"
POD_CIDR: Final = "10.244.0.0/24"
BRIDGE: Final = "einode0"
NETWORK: Final = "envoy-injector-node"
GUARD_PREFIX: Final = "EI-NODE-"
NETNS_DIR: Final = Path("/run/netns")


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def conflist(directory: Path, cni_data: Path) -> dict[str, object]:
    """The bridge network; host-local keeps its leases in the node's directory."""
    return {
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    # Through the bridge to the host, where kube-proxy's rules take Service
                    # traffic; the FORWARD guard drops anything that would go further.
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(cni_data),
                },
            },
            {"type": "loopback"},
        ],
    }


def add_node_address(rec: record.Record) -> None:
    rec.add({"kind": "address", "name": f"{NODE_IP}/32", "dev": "lo"})
    present = run(["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout
    if f" {NODE_IP}/32 " not in present:
        run(["ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo"])


def delete_address(entry: record.Entry) -> None:
    run(["ip", "addr", "del", entry["name"], "dev", entry["dev"]], check=False)


def remember_bridge(rec: record.Record) -> None:
    """The bridge plugin creates the bridge with the first Pod; it is ours to delete."""
    rec.add({"kind": "link", "name": BRIDGE})


def delete_link(entry: record.Entry) -> None:
    run(["ip", "link", "del", entry["name"]], check=False)


def guard_rules(service_cidr: str, apiserver_port: int) -> list[tuple[str, str, list[list[str]]]]:
    """(table, built-in chain, rules of our chain) for each guard; each rule list ends the walk."""
    return [
        (
            "filter",
            "FORWARD",
            [["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"], ["-j", "DROP"]],
        ),
        (
            "mangle",
            "POSTROUTING",
            [
                ["-d", POD_CIDR, "-o", BRIDGE, "-j", "RETURN"],
                ["-d", POD_CIDR, "-j", "DROP"],
                ["-d", service_cidr, "-j", "DROP"],
            ],
        ),
        (
            "filter",
            "INPUT",
            [
                ["-p", "tcp", "--dport", str(apiserver_port), "-i", "lo", "-j", "RETURN"],
                ["-p", "tcp", "--dport", str(apiserver_port), "-i", BRIDGE, "-j", "RETURN"],
                ["-p", "tcp", "--dport", str(apiserver_port), "-j", "DROP"],
            ],
        ),
    ]


def add_guards(rec: record.Record, service_cidr: str, apiserver_port: int) -> None:
    for table, hook, rules in guard_rules(service_cidr, apiserver_port):
        chain = f"{GUARD_PREFIX}{hook}"
        rec.add({"kind": "iptables-chain", "name": chain, "table": table, "hook": hook})
        run(["iptables", "-w", "-t", table, "-N", chain])
        for rule in rules:
            run(["iptables", "-w", "-t", table, "-A", chain, *rule])
        run(["iptables", "-w", "-t", table, "-I", hook, "1", "-j", chain])


def delete_chain(entry: record.Entry) -> None:
    table, hook, chain = entry["table"], entry["hook"], entry["name"]
    while (
        run(["iptables", "-w", "-t", table, "-D", hook, "-j", chain], check=False).returncode == 0
    ):
        pass
    run(["iptables", "-w", "-t", table, "-F", chain], check=False)
    run(["iptables", "-w", "-t", table, "-X", chain], check=False)


TABLES: Final = ("filter", "nat", "mangle")


def chains(tool: str, table: str) -> set[str]:
    result = run([tool, "-w", "-t", table, "-S"], check=False)
    return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("-N ")}


def remember_kube_chains(rec: record.Record) -> None:
    """kube-proxy and the kubelet add KUBE-* chains and jumps to them; those new are ours."""
    before = {
        f"{tool}/{table}": sorted(chains(tool, table))
        for tool in ("iptables", "ip6tables")
        for table in TABLES
    }
    rec.add({"kind": "kube-chains", "name": "KUBE-*", "before": before})


def delete_kube_chains(entry: record.Entry) -> None:
    for key, before in entry["before"].items():
        tool, table = key.split("/")
        ours = {name for name in chains(tool, table) - set(before) if name.startswith("KUBE-")}
        if not ours:
            continue
        for line in run([tool, "-w", "-t", table, "-S"], check=False).stdout.splitlines():
            words = shlex.split(line)
            if words[:1] == ["-A"] and words[1] not in ours and _target(words) in ours:
                run([tool, "-w", "-t", table, "-D", *words[1:]], check=False)
        for name in ours:
            run([tool, "-w", "-t", table, "-F", name], check=False)
        for name in ours:
            run([tool, "-w", "-t", table, "-X", name], check=False)


def _target(words: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in words:
            return words[words.index(flag) + 1]
    return None


def remember_netns(rec: record.Record) -> None:
    rec.add({"kind": "netns", "name": POD_CIDR})


def delete_netns(entry: record.Entry) -> None:
    """Delete every network namespace holding an address of the node's Pod range."""
    network = ipaddress.ip_network(entry["name"])
    if not NETNS_DIR.is_dir():
        return
    for path in sorted(NETNS_DIR.iterdir()):
        addresses = run(["ip", "-n", path.name, "-4", "-o", "addr"], check=False).stdout
        ours = any(
            ipaddress.ip_interface(word).ip in network
            for line in addresses.splitlines()
            for word in line.split()[3:4]
        )
        if ours:
            run(["ip", "netns", "delete", path.name], check=False)


record.register("address", delete_address)
record.register("link", delete_link)
record.register("iptables-chain", delete_chain)
record.register("kube-chains", delete_kube_chains)
record.register("netns", delete_netns)
