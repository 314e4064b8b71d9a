"""checkov on everything the deploy scripts render: no finding without a written reason."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY_DIR, REPO_ROOT

ACCEPTED = DEPLOY_DIR / "checkov-accepted.yaml"


def checkov_binary() -> str:
    for candidate in (REPO_ROOT / ".venv-tools" / "bin" / "checkov", shutil.which("checkov")):
        if candidate and os.path.exists(candidate):
            return str(candidate)
    pytest.skip("checkov not found (scripts/setup.sh dev installs it into .venv-tools)")


# --skip-download keeps checkov off Bridgecrew's API; this keeps its import-time update check off pypi.org
# (the browser tests' socket watch saw it dial out when both ran in one session).
CHECKOV_ENV = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}


@pytest.fixture(scope="module")
def findings(tmp_path_factory, kubectl, shared) -> list[dict]:
    """Failed checks over the dry-run output of deploy-cluster.sh (dev and prod) and the Dockerfile."""
    out = tmp_path_factory.mktemp("checkov")
    env = {**os.environ, "KUBECTL": kubectl, "PYTHON": str(REPO_ROOT / ".venv" / "bin" / "python"),
           "SLUICE_SHARED_DIR": str(shared), "KUBECONFIG": str(out / "no-cluster")}
    for sluice_env in ("dev", "prod"):
        subprocess.run([str(REPO_ROOT / "deploy-cluster.sh"), "--dry-run", "--env", sluice_env,
                        "--out", str(out / "render" / sluice_env)],
                       check=True, capture_output=True, env=env, timeout=600)
    shutil.copy(REPO_ROOT / "Dockerfile", out / "render" / "Dockerfile")
    result = subprocess.run(
        [checkov_binary(), "-d", str(out / "render"), "--framework", "kubernetes", "dockerfile",
         "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=900, env=CHECKOV_ENV,
    )
    assert result.stdout, result.stderr[-3000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} >= {"kubernetes", "dockerfile"}
    assert sum(r["summary"]["resource_count"] for r in reports) > 100, "checkov saw too little"
    return [f for r in reports for f in r["results"]["failed_checks"]]


def accepted() -> dict:
    return yaml.safe_load(ACCEPTED.read_text())


def is_accepted(finding: dict, entries: dict) -> bool:
    entry = entries.get(finding["check_id"])
    return bool(entry) and any(fnmatch.fnmatchcase(finding["resource"], p) or
                               fnmatch.fnmatchcase(finding["resource"], p + ".*") for p in entry["resources"])


def test_every_accepted_finding_has_a_reason():
    for check, entry in accepted().items():
        assert len(entry.get("reason", "").split()) >= 8, f"{check}: write why it is accepted"
        assert entry.get("resources"), f"{check}: name the resources it covers"


def test_no_unexplained_findings(findings):
    entries = accepted()
    unexplained = sorted({f"{f['check_id']} {f['check_name']}: {f['resource']}"
                          for f in findings if not is_accepted(f, entries)})
    assert not unexplained, "\n".join(unexplained)


def test_no_stale_acceptances(findings):
    entries = accepted()
    used = {f["check_id"] for f in findings if is_accepted(f, entries)}
    assert set(entries) == used, f"accepted but no longer found: {set(entries) - used}"
