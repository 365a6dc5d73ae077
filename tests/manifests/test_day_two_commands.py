"""The README's day-two one-liner builds a Job whose arguments the certificate job accepts.

`kubectl create job --from=cronjob/NAME` copies the CronJob's jobTemplate (the arguments
included); the README then adds a flag with `kubectl patch --local --type=json`, an RFC 6902
patch, applied here with the same semantics (jsonpatch), to the shipped CronJob.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Final

import jsonpatch
import pytest

from certs import job
from tests.manifests import documents
from tests.manifests.documents import INJECTOR, ROOT, Object

README: Final = (ROOT / "README.md").read_text()


def one_liner() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    (block,) = [b for b in blocks if "create job" in b and "--from=cronjob/" in b]
    return shlex.split(block.replace("\\\n", " "), comments=True)


def job_from_cronjob(words: list[str]) -> Object:
    """What `kubectl create job NAME --from=cronjob/CRON` sends: the jobTemplate as a Job."""
    (source,) = [w.removeprefix("--from=cronjob/") for w in words if w.startswith("--from=")]
    namespace = words[words.index("-n") + 1]
    cronjob = documents.one(documents.objects(INJECTOR), "CronJob", source)
    assert cronjob["metadata"]["namespace"] == namespace
    name = words[words.index("job") + 1]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
        },
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }


@pytest.mark.parametrize(
    ("flag", "field"), [("--renew-now", "renew_now"), ("--rotate-ca", "rotate_ca")]
)
def test_the_documented_one_liner_runs_the_cronjobs_arguments_plus_the_flag(
    flag: str, field: str
) -> None:
    words = one_liner()
    assert words[:2] == ["kubectl", "-n"]
    assert words.count("|") == 2
    ops = json.loads(words[words.index("-p") + 1].replace("--renew-now", flag))
    built = job_from_cronjob(words)
    patched = jsonpatch.apply_patch(built, ops)
    (container,) = patched["spec"]["template"]["spec"]["containers"]
    command, *args = container["args"]
    assert command == "certs"
    parsed = vars(job._parser().parse_args(args))
    usual = vars(job._parser().parse_args(container["args"][1:-1]))
    assert parsed == {**usual, field: True}
    (original,) = built["spec"]["template"]["spec"]["containers"]
    assert original["args"] == container["args"][:-1]  # the CronJob's own arguments, all kept
