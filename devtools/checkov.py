"""Runs checkov on the SAM template as operators would deploy it, in each shape it takes.

    python3 -m devtools.checkov

checkov evaluates a template's conditions with the parameters' defaults, so on template.yaml
alone it never sees the database the template can create. Each variant below is the template
with other defaults (written as JSON under the target directory); checkov must pass them all,
each finding fixed, or skipped with its reason in `.checkov.yaml`, the one place for them.
"""
import json
import shutil
import subprocess
import sys

from devtools.paths import ROOT, target_dir
from devtools.template import DEFAULT_BUDGET, managed_concurrency_at_the_default

CHECKOV = ROOT / ".tools/lint/bin/checkov"

# What an operator switches on, one deploy shape per variant.
VARIANTS = {
    "existing-database": {},
    "created-database-with-a-reader": {
        "CreateDatabase": "true",
        "DatabaseAvailabilityZones": "eu-west-1a,eu-west-1b",
        "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "DatabaseAuthentication": "iam",
    },
    # The most invocations per environment the default budget holds (devtools/template.py).
    "managed-instances": {"ManagedInstancesConcurrency": str(managed_concurrency_at_the_default()),
                          "DatabaseConnectionBudget": str(DEFAULT_BUDGET)},
}


def main():
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    folder = target_dir() / "checkov"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, defaults in VARIANTS.items():
        variant = json.loads(json.dumps(template))
        for parameter, value in defaults.items():
            assert parameter in variant["Parameters"], parameter
            allowed = variant["Parameters"][parameter].get("AllowedValues")
            assert allowed is None or value in map(str, allowed), (name, parameter, value)
            variant["Parameters"][parameter]["Default"] = value
        (folder / f"{name}.json").write_text(json.dumps(variant, indent=1))
    # --skip-download: no network (checkov otherwise fetches guidelines from Prisma Cloud).
    result = subprocess.run([CHECKOV, "--config-file", ROOT / ".checkov.yaml",
                             "--skip-download", "--quiet", "--compact",
                             "--framework", "cloudformation", "--directory", folder])
    if result.returncode != 0:
        sys.exit(f"checkov: findings in {', '.join(VARIANTS)} (see above)")
    print(f"checkov: no findings in the {len(VARIANTS)} variants of template.yaml")


if __name__ == "__main__":
    main()
