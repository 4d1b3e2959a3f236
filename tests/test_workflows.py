"""The GitHub workflows do what docs/ci-cd.md says (their syntax and security are checked by
check-jsonschema and zizmor in `make test`, by actionlint in ci.yml)."""
import re

import yaml

from devtools.paths import ROOT

WORKFLOWS = ROOT / ".github/workflows"


def workflow(name):
    # PyYAML reads the key `on` as the boolean True.
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)
    return document


def runs(job):
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_ci_runs_the_readmes_test_command_on_every_push_and_pull_request():
    ci = workflow("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and (ROOT / ".ci/run").read_text().strip().endswith("make test")
    assert runs(ci["jobs"]["test"])[-1] == "make test"
    online = "\n".join(runs(ci["jobs"]["online"]))
    assert "check advisories" in online and "actionlint" in online


def test_deploy_assumes_a_role_through_oidc_and_deploys_one_stage_from_main_or_by_hand():
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in deploy["on"]
    assert deploy["permissions"] == {}
    job = deploy["jobs"]["deploy"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    [credentials] = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/")]
    assert set(credentials["with"]) == {"role-to-assume", "aws-region"}, "no stored keys"
    assert any('sam deploy --config-env "$STAGE"' in run for run in runs(job))


def test_every_action_is_pinned_by_commit():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d", line), (path.name, line)
