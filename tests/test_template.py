"""Checks on template.yaml that need no AWS account: it agrees with the workspace, its IAM is
least privilege, and `sam build` produced an arm64 binary for every function.

Run by `make test` (after `sam build`) with the project's virtualenv, from the repository root:
`.venv/bin/python -m pytest tests`.
"""
import json
import math
import os
import pathlib
import re
import tomllib

import pytest
from cfnlint.decode import cfn_yaml, decode

from devtools import template as generator
from devtools.paths import ROOT
from devtools.routes import Route, declared_routes
FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists())
EM_AARCH64 = 183  # ELF e_machine


@pytest.fixture(scope="module")
def template():
    parsed, errors = decode(str(ROOT / "template.yaml"))
    assert not errors, errors
    return parsed


def functions_of(template):
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def code_folder(resource):
    return pathlib.PurePosixPath(resource["Properties"]["CodeUri"]).name


def test_the_generated_parts_follow_the_route_declarations():
    """What devtools/template.py writes from shared/src/routes is committed as it writes it:
    a route added, removed or changed without `make template` fails here."""
    for path, (now, wanted) in generator.generated().items():
        assert now == wanted, f"{path.name} is stale: run `make template`"


def test_every_function_is_in_the_vpc_with_bounded_concurrency(template):
    """What checkov's CKV_AWS_117 and CKV_AWS_115 would check, which .checkov.yaml skips since
    checkov cannot read a function on Managed Instances: on demand, a VpcConfig and a reserved
    concurrency; on Managed Instances, the capacity provider (in the VPC) and a most number of
    environments."""
    for name, resource in functions_of(template).items():
        properties = resource["Properties"]
        on_instances = "CapacityProviderConfig" in properties
        if on_instances:
            assert properties["FunctionScalingConfig"]["MaxExecutionEnvironments"], name
            assert template["Resources"]["CapacityProvider"]["Properties"]["VpcConfig"] == {
                "SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}}
        else:
            assert properties["VpcConfig"] == {
                "SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}}, name
            assert properties["ReservedConcurrentExecutions"], name


def test_every_function_folder_has_a_resource_and_every_resource_a_folder(template):
    resources = functions_of(template)
    assert sorted({code_folder(r) for r in resources.values()}) == FUNCTIONS
    for name, resource in resources.items():
        assert resource["Properties"]["CodeUri"] == f"functions/{code_folder(resource)}", name


def test_each_api_function_runs_on_demand_or_on_managed_instances_one_of_the_two(template):
    resources = functions_of(template)
    api = api_functions(template)
    assert len(api) == len(declared_routes())
    for name in api:
        managed = name.replace("Function", "ManagedFunction")
        on_demand, on_instances = resources[name], resources[managed]
        assert on_demand["Condition"] == "OnDemandEnvironments", name
        assert on_instances["Condition"] == "UseManagedInstances", managed
        properties, managed_properties = on_demand["Properties"], on_instances["Properties"]
        assert "VpcConfig" in properties and "CapacityProviderConfig" not in properties, name
        assert "CapacityProviderConfig" in managed_properties and "VpcConfig" not in managed_properties
        # The same function either way: name, code, alarms, logs, permissions.
        for key in ("FunctionName", "CodeUri", "DeploymentPreference", "LoggingConfig", "Policies",
                    "Environment"):
            assert properties.get(key) == managed_properties.get(key), (name, key)
        config = managed_properties["CapacityProviderConfig"]
        assert config["PerExecutionEnvironmentMaxConcurrency"] == {"Ref": "ManagedInstancesConcurrency"}
    assert template["Globals"]["Function"].get("VpcConfig") is None, "SAM refuses it beside a capacity provider"
    assert "VpcConfig" in resources["MigrateFunction"]["Properties"]


def test_every_function_is_a_cargo_lambda_arm64_al2023_bootstrap(template):
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "provided.al2023"
    assert globals_["Handler"] == "bootstrap"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Tracing"] == "Active"
    assert globals_["LoggingConfig"]["LogFormat"] == "JSON"
    for name, resource in functions_of(template).items():
        assert resource["Metadata"]["BuildMethod"] == "rust-cargolambda", name
        for key in ("Runtime", "Handler", "Architectures"):
            assert key not in resource["Properties"], f"{name} overrides {key}"


def template_routes(template):
    """(method, path, function folder) for every API route, through its integration."""
    resources = template["Resources"]
    routes = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        properties = resource["Properties"]
        assert properties["ApiId"] == {"Ref": "Api"}, name
        method, path = properties["RouteKey"].split(" ", 1)
        integration = re.fullmatch(r"integrations/\$\{(\w+)\}", properties["Target"]["Fn::Sub"]).group(1)
        function = aliased_function(resources[integration]["Properties"]["IntegrationUri"])
        routes.add((method, path, code_folder(resources[function])))
    return routes


def aliased_function(reference):
    """The function whose `live` alias `reference` is (`!Ref <Function>.Alias`), its on-demand
    resource when it may also run on managed instances (`!If [UseManagedInstances, …]`)."""
    if "Fn::If" in reference:
        condition, managed, on_demand = reference["Fn::If"]
        assert condition == "UseManagedInstances", reference
        assert aliased_function(managed) == aliased_function(on_demand).replace("Function", "ManagedFunction")
        reference = on_demand
    function, alias = reference["Ref"].split(".")
    assert alias == "Alias", reference
    return function


def test_every_routed_function_may_be_invoked_by_this_api_only_on_its_own_routes(template):
    """Each permission names the routes that reach its function, as API Gateway's source ARN
    spells them (`<stage>/<METHOD>/<path>`, a path parameter `*`): a method `*` only where an
    `ANY` route shares the path, never `/*/*`."""
    resources = template["Resources"]
    integrations = {name: aliased_function(resource["Properties"]["IntegrationUri"])
                    for name, resource in resources.items()
                    if resource["Type"] == "AWS::ApiGatewayV2::Integration"}
    routed = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGatewayV2::Route":
            properties = resource["Properties"]
            integration = properties["Target"]["Fn::Sub"].removeprefix("integrations/${").rstrip("}")
            method, path = properties["RouteKey"].split(" ")
            routed.setdefault(integrations[integration], set()).add(
                (method, re.sub(r"\{[^}]+\}", "*", path)))
    permitted = {
        aliased_function(resource["Properties"]["FunctionName"]): resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Permission"
    }
    assert sorted(permitted) == sorted(routed)
    prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/"
    for function, routes in routed.items():
        assert permitted[function]["Principal"] == "apigateway.amazonaws.com", function
        paths = {path for _, path in routes}
        assert len(paths) == 1, (function, routes)
        methods = {method for method, _ in routes}
        method = methods.pop() if len(methods) == 1 and "ANY" not in methods else "*"
        assert permitted[function]["SourceArn"] == {"Fn::Sub": f"{prefix}{method}{paths.pop()}"}, function


def test_the_jwt_authorizer_guards_each_users_route_with_its_scope_once_there_is_an_issuer(template):
    resources = template["Resources"]
    assert resources["UsersJwtAuthorizer"]["Condition"] == "UseApiJwtAuthorizerCondition"
    assert template["Parameters"]["UseApiJwtAuthorizer"]["Default"] == "true"
    assert template["Conditions"]["UseApiJwtAuthorizerCondition"] == {
        "Fn::Equals": [{"Ref": "UseApiJwtAuthorizer"}, "true"]}
    # The issuer is required: the functions refuse a JWKS without one.
    issuer = template["Parameters"]["JwtIssuer"]
    assert "Default" not in issuer and issuer["AllowedPattern"] == "^https://.+$"
    assert template["Globals"]["Function"]["Environment"]["Variables"]["JWT_ISSUER"] == {"Ref": "JwtIssuer"}
    scopes = {}
    declared = {route.key: route for route in declared_routes()}
    public_paths = {route.path for route in declared.values() if route.scope is None}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGatewayV2::Route":
            properties = resource["Properties"]
            # Public: the routes declared without a scope, and the 405s of their paths.
            if properties["RouteKey"].split(" ")[1] in public_paths:
                assert properties["AuthorizationType"] == "NONE"
                assert "AuthorizationScopes" not in properties
                continue
            assert properties["AuthorizationType"] == {
                "Fn::If": ["UseApiJwtAuthorizerCondition", "JWT", "NONE"]}
            assert properties["AuthorizerId"]["Fn::If"][1] == {"Ref": "UsersJwtAuthorizer"}
            # Any valid token for the 405s of other methods.
            if properties["RouteKey"] not in declared:
                assert "AuthorizationScopes" not in properties
                continue
            scopes[properties["RouteKey"]] = properties["AuthorizationScopes"]["Fn::If"][1]
    # Each route's scope, as its declaration in shared/src/routes/ names it.
    assert scopes == {key: [{"Ref": SCOPE_PARAMETER[route.scope]}]
                      for key, route in declared.items() if route.scope}
    # The functions require the same names.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["JWT_SCOPE_READ"] == {"Ref": "JwtScopeRead"}
    assert variables["JWT_SCOPE_WRITE"] == {"Ref": "JwtScopeWrite"}


# The template parameter naming each `Scope` of shared/src/auth (what the authorizer requires and
# the functions read as JWT_SCOPE_READ / JWT_SCOPE_WRITE).
SCOPE_PARAMETER = {"UsersRead": "JwtScopeRead", "UsersWrite": "JwtScopeWrite"}

# The methods `cargo lambda watch` stands for the template's 405 routes with (it routes by exact
# method, and answers preflights itself).
OTHER_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH", "TRACE", "QUERY"}

# The methods the template routes on every path: the declared ones, and a 405 route for each of
# the others. Never OPTIONS, nor ANY, which takes OPTIONS too: with no route for it, API Gateway
# answers a browser's preflight from the CORS configuration, with no token and no throttle.
GATEWAY_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}


def other_method_routes(template):
    """The template's 405 routes: (method, path, function) of every route no declaration names."""
    declared = {(route.method, route.path) for route in declared_routes()}
    return {route for route in template_routes(template) if route[:2] not in declared}


def test_the_templates_routes_are_the_declared_ones_each_to_its_declared_function(template):
    """shared/src/routes/ declares each route once; the template routes each declared key, and
    no other (bar the 405s of the other methods), to the function the declaration names, whose
    `main` serves that route's module."""
    declared = {(route.method, route.path, route.function) for route in declared_routes()}
    routes = template_routes(template)
    assert routes - other_method_routes(template) == declared
    for path in {route.path for route in declared_routes()}:
        assert {method for method, p, _ in routes if p == path} == GATEWAY_METHODS, path
    for route in declared_routes():
        main = (ROOT / "functions" / route.function / "src" / "main.rs").read_text()
        assert f"routes::{route.module}::" in main, (route.function, route.module)


def test_the_watch_router_routes_each_declared_route_and_every_other_method_of_its_paths():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    router = cargo["workspace"]["metadata"]["lambda"]["watch"]["router"]
    routes = declared_routes()
    assert set(router) == {route.path for route in routes}
    for path, entries in router.items():
        served = {(route.method, route.function) for route in routes if route.path == path}
        listed = {(entry["method"].upper(), entry["function"]) for entry in entries}
        assert served <= listed, path
        # Every other method goes to one function of the path, which answers 405.
        others = listed - served
        assert {method for method, _ in others} == OTHER_METHODS - {m for m, _ in served}, path
        assert len({function for _, function in others}) == 1, path
        assert {function for _, function in others} <= {f for _, f in served}, path


def test_every_alarm_on_a_route_names_a_declared_route_and_the_version_of_its_function(template):
    """The canary alarms watch one route of one version: the `route` dimension must be a key
    the source declares (the functions emit exactly that), and the `version` one the version of
    the function that serves it."""
    declared = {route.key: route.function for route in declared_routes()}
    resources = template["Resources"]

    def dimension_sets(node):
        if isinstance(node, dict):
            if "Dimensions" in node and isinstance(node["Dimensions"], list):
                yield node["Dimensions"]
            for value in node.values():
                yield from dimension_sets(value)
        elif isinstance(node, list):
            for value in node:
                yield from dimension_sets(value)

    watched = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for dimensions in dimension_sets(resource["Properties"]):
            values = {d["Name"]: d["Value"] for d in dimensions}
            if "route" not in values:
                continue
            key = values["route"]
            assert key in declared, (name, key)
            version = values["version"]["Fn::If"][2]["Fn::GetAtt"][0]
            assert code_folder(resources[version]) == declared[key], (name, key, version)
            watched.add(key)
    assert watched, "no alarm watches a route"


def test_routes_agree_with_the_watch_router(template):
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    router = cargo["workspace"]["metadata"]["lambda"]["watch"]["router"]
    watch_routes = {
        (route["method"].upper(), path, route["function"])
        for path, routes in router.items()
        for route in routes
    }
    others = other_method_routes(template)
    explicit = template_routes(template) - others
    expected = set(explicit)
    for _, path, function in others:
        taken = {method for method, route_path, _ in explicit if route_path == path}
        expected |= {(method, path, function) for method in OTHER_METHODS - taken}
    assert watch_routes == expected


def test_every_path_answers_other_methods_from_one_of_its_own_functions(template):
    others = other_method_routes(template)
    explicit = template_routes(template) - others
    for path in {path for _, path, _ in explicit}:
        own = {function for _, p, function in explicit if p == path}
        catch_all = {function for _, p, function in others if p == path}
        assert len(catch_all) == 1 and catch_all <= own, (path, catch_all, own)


def test_routes_agree_with_the_openapi_document_when_there_is_one(template):
    spec = ROOT / "openapi.yaml"
    if not spec.exists():
        pytest.skip("no openapi.yaml")
    document, errors = decode(str(spec))
    assert not errors, errors
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == {(route.method, route.path) for route in declared_routes()}
    # Each operation requires the scope its route does, under the template's default names
    # (the functions' defaults too: shared/src/auth/mod.rs, ScopeNames).
    parameters = template["Parameters"]
    names = {"JwtScopeRead": parameters["JwtScopeRead"]["Default"],
             "JwtScopeWrite": parameters["JwtScopeWrite"]["Default"]}
    assert names == {"JwtScopeRead": "users:read", "JwtScopeWrite": "users:write"}
    for route in declared_routes():
        operation = document["paths"][route.path][route.method.lower()]
        security = [{"bearerAuth": [names[SCOPE_PARAMETER[route.scope]]]}] if route.scope else []
        assert operation.get("security") == security, route.key


def statements(template):
    """Every IAM statement in the template, with where it is, SAM policy templates and the managed
    policies a function attaches included (as the function's)."""
    resources = template["Resources"]
    for name, resource in resources.items():
        properties = resource.get("Properties", {})
        for policy in properties.get("Policies", []):
            if isinstance(policy, dict) and "Ref" in policy:
                managed = resources[policy["Ref"]]
                assert managed["Type"] == "AWS::IAM::ManagedPolicy", policy
                policy = managed["Properties"]
            for candidate in unwrap_if(policy):
                if "AWSSecretsManagerGetSecretValuePolicy" in candidate:
                    arn = candidate["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
                    yield name, {"Action": "secretsmanager:GetSecretValue", "Resource": arn}
                for statement in candidate.get("Statement", []):
                    yield name, statement
                for statement in candidate.get("PolicyDocument", {}).get("Statement", []):
                    for inner in unwrap_if(statement):
                        yield name, inner


def unwrap_if(value):
    """Both branches of an Fn::If (a NoValue branch yields nothing)."""
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            yield from unwrap_if(branch)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_no_statement_grants_secrets_or_keys_on_a_wildcard(template):
    found = list(statements(template))
    assert found, "no IAM statements found: the walk is broken"
    for name, statement in found:
        actions = [a.lower() for a in as_list(statement["Action"])]
        assert not any(a in ("*", "secretsmanager:*", "kms:*", "rds-db:*") for a in actions), (name, statement)
        if any(a.startswith(("secretsmanager:", "kms:", "rds-db:")) for a in actions):
            for resource in as_list(statement["Resource"]):
                for branch in unwrap_if(resource):
                    assert "*" not in str(branch), (name, statement)


OWNER_SECRET = {
    "Fn::If": [
        "CreateDatabaseCondition",
        {"Fn::GetAtt": ["DatabaseCluster", "MasterUserSecret.SecretArn"]},
        {"Ref": "DatabaseSecretArn"},
    ]
}
APP_SECRET = {
    "Fn::If": ["CreateDatabaseCondition", {"Ref": "AppDatabaseSecret"}, {"Ref": "AppDatabaseSecretArn"}]
}


def test_the_api_functions_read_only_the_application_roles_secret_and_migrate_both(template):
    readable = {}
    for name, statement in statements(template):
        if "secretsmanager:GetSecretValue" in as_list(statement["Action"]):
            readable.setdefault(name, []).extend(as_list(statement["Resource"]))
    for name in functions_of(template):
        expected = [OWNER_SECRET, APP_SECRET] if name == "MigrateFunction" else [APP_SECRET]
        assert readable.get(name) == expected, name
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DB_SECRET_ID"] == APP_SECRET
    migrate = template["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"]
    assert (migrate["DB_SECRET_ID"], migrate["DB_APP_SECRET_ID"]) == (OWNER_SECRET, APP_SECRET)


def test_the_application_roles_secret_rotates_keeping_the_user_iam_authentication_names(template):
    resources, conditions = template["Resources"], template["Conditions"]
    multi = resources["AppDatabaseSecretRotation"]
    single = resources["AppDatabaseSecretRotationKeepingItsUser"]
    # Multi-user rotation (never breaks a connection in use) renames the secret's user: only
    # where no IAM policy names the user.
    assert multi["DependsOn"] == "Migrations", "the first rotation clones the role migrate creates"
    assert multi["Properties"]["HostedRotationLambda"]["RotationType"] == "PostgreSQLMultiUser"
    assert conditions["RotateAppSecret"] == {"Fn::And": [
        {"Condition": "CreateDatabaseCondition"}, {"Fn::Not": [{"Condition": "UseIamAuth"}]}]}
    # Through RDS Proxy, the proxy logs in with the secret of the user a token names, users_api
    # (the functions' rds-db:connect): single-user rotation keeps it.
    assert single["Properties"]["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"
    assert conditions["RotateAppSecretKeepingItsUser"] == {"Fn::And": [
        {"Condition": "CreateDatabaseCondition"}, {"Condition": "UseIamAuthThroughProxy"}]}
    assert conditions["UseIamAuthThroughProxy"] == {"Fn::And": [
        {"Condition": "UseIamAuth"}, {"Condition": "UseRdsProxyCondition"}]}
    secret = resources["AppDatabaseSecret"]["Properties"]["GenerateSecretString"]
    assert '"username": "users_api"' in secret["SecretStringTemplate"]["Fn::Sub"]
    assert "AWS::SecretsManager-2020-07-23" in template["Transform"]


@pytest.mark.skipif(not os.environ.get("SAM_BUILD_DIR"), reason="set SAM_BUILD_DIR after `sam build`")
def test_sam_build_made_an_aarch64_bootstrap_for_every_function(template):
    build = pathlib.Path(os.environ["SAM_BUILD_DIR"])
    built, errors = decode(str(build / "template.yaml"))
    assert not errors, errors
    for name in functions_of(template):
        # A function and its twin on managed instances share one build (`<Name>Function-Shared`).
        bootstrap = build / built["Resources"][name]["Properties"]["CodeUri"] / "bootstrap"
        header = bootstrap.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", bootstrap
        assert header[4] == 2, f"{bootstrap}: not 64-bit"
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64, f"{bootstrap}: not aarch64"
        assert os.access(bootstrap, os.X_OK), bootstrap


def test_every_users_function_binds_tokens_to_this_api(template):
    assert template["Rules"]["TokensBoundToThisApi"]["Assertions"], "the binding rule is gone"
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert {"JWT_JWKS_URL", "JWT_AUDIENCE", "JWT_CLIENT_IDS"} <= variables.keys()
    for name, resource in functions_of(template).items():
        overrides = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert not any(key.startswith("JWT_") for key in overrides), name


def evaluate(node, conditions):
    """A fragment with its `Fn::If`s decided by `conditions`."""
    if isinstance(node, dict) and "Fn::If" in node:
        condition, then, otherwise = node["Fn::If"]
        return evaluate(then if conditions[condition] else otherwise, conditions)
    return node


def test_traces_go_to_the_collector_layer_when_there_is_one(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    endpoint = variables["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert evaluate(endpoint, {"HasOtelCollector": True}) == "http://localhost:4318"
    assert evaluate(endpoint, {"HasOtelCollector": False}) == {"Ref": "AWS::NoValue"}
    assert template["Parameters"]["OtelCollectorLayerArn"]["Default"] == ""


def test_the_database_connection_verifies_the_server_by_default(template):
    assert template["Parameters"]["DatabaseSslMode"]["Default"] == "verify-full"
    globals_ = template["Globals"]["Function"]
    variables = globals_["Environment"]["Variables"]
    assert variables["DB_SSLMODE"] == {"Ref": "DatabaseSslMode"}
    bundle = "/opt/rds-ca/global-bundle.pem"
    assert variables["DB_SSLROOTCERT"] == {"Fn::If": ["HasCaBundleLayer", bundle, {"Ref": "AWS::NoValue"}]}
    ca = {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:layer:${DatabaseCaBundleLayer}"}
    collector = {"Ref": "OtelCollectorLayerArn"}
    for has_ca in (False, True):
        for has_collector in (False, True):
            conditions = {"HasCaBundleLayer": has_ca, "HasOtelCollector": has_collector,
                          "HasCaBundleAndOtelCollector": has_ca and has_collector}
            expected = [layer for layer, wanted in ((ca, has_ca), (collector, has_collector))
                        if wanted] or {"Ref": "AWS::NoValue"}
            assert evaluate(globals_["Layers"], conditions) == expected, conditions
    assert template["Rules"]["VerifiedTlsNeedsTheCaBundle"]["Assertions"]
    for name, resource in functions_of(template).items():
        overrides = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert "DB_SSLMODE" not in overrides and "DB_SSLROOTCERT" not in overrides, name


def test_statements_are_named_only_on_a_created_cluster_reached_directly(template):
    """RDS Proxy pins a session that names statements, and an existing database may sit
    behind a transaction-mode pooler, where a name reaches another client's session."""
    assert template["Conditions"]["NamedStatements"] == {"Fn::And": [
        {"Condition": "CreateDatabaseCondition"},
        {"Fn::Not": [{"Condition": "UseRdsProxyCondition"}]}]}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    named = variables["DB_NAMED_STATEMENTS"]
    assert evaluate(named, {"NamedStatements": True}) == "true"
    assert evaluate(named, {"NamedStatements": False}) == {"Ref": "AWS::NoValue"}
    for name, resource in functions_of(template).items():
        overrides = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert "DB_NAMED_STATEMENTS" not in overrides, name


def test_layers_come_from_this_account_or_from_aws_distro_for_opentelemetry(template):
    parameters = template["Parameters"]
    collector = re.compile(parameters["OtelCollectorLayerArn"]["AllowedPattern"])
    adot = "arn:aws:lambda:eu-west-1:901920570463:layer:aws-otel-collector-arm64-ver-0-117-0:1"
    assert collector.fullmatch(adot) and collector.fullmatch("")
    for foreign in (adot.replace("901920570463", "123456789012"),
                    adot.replace("aws-otel-collector-arm64", "my-collector")):
        assert not collector.fullmatch(foreign), foreign
    # The CA bundle: a name and version, made an ARN of this account's in the template.
    bundle = re.compile(parameters["DatabaseCaBundleLayer"]["AllowedPattern"])
    assert bundle.fullmatch("rds-ca-bundle:3") and bundle.fullmatch("")
    assert not bundle.fullmatch("arn:aws:lambda:eu-west-1:123456789012:layer:rds-ca-bundle:3")
    assert "${AWS::AccountId}:layer:${DatabaseCaBundleLayer}" in json.dumps(template["Globals"])


def test_a_key_decrypts_only_through_secrets_manager_the_secrets_its_role_reads(template):
    readable, decrypting = {}, {}
    for name, statement in statements(template):
        actions = as_list(statement["Action"])
        if "secretsmanager:GetSecretValue" in actions:
            readable.setdefault(name, []).extend(as_list(statement["Resource"]))
        if "kms:Decrypt" in actions:
            decrypting[name] = statement
    assert sorted(decrypting) == sorted(readable), "every role that reads a secret may decrypt it"
    for name, statement in decrypting.items():
        assert statement["Resource"] == {"Ref": "KmsKeyArn"}, name
        condition = statement["Condition"]["StringEquals"]
        assert condition["kms:ViaService"] == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
        assert as_list(condition["kms:EncryptionContext:SecretARN"]) == readable[name], name


CLUSTER_ID = {"Fn::Join": ["-", ["users", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]]}
IF_KMS_KEY = {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


def test_the_created_database_is_encrypted_logged_monitored_and_protected(template):
    resources = template["Resources"]
    cluster = resources["DatabaseCluster"]
    properties = cluster["Properties"]
    assert properties["StorageEncrypted"] is True
    assert properties["KmsKeyId"] == IF_KMS_KEY
    assert properties["MasterUserSecret"] == {"KmsKeyId": IF_KMS_KEY}
    assert resources["AppDatabaseSecret"]["Properties"]["KmsKeyId"] == IF_KMS_KEY
    assert properties["DeletionProtection"] == {"Ref": "DatabaseDeletionProtection"}
    assert template["Parameters"]["DatabaseDeletionProtection"]["Default"] == "true"
    assert cluster["DeletionPolicy"] == "Snapshot"
    # The server's log goes to a log group made first, with the stack's retention and key.
    assert properties["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert properties["DBClusterIdentifier"] == CLUSTER_ID
    logs = resources["DatabaseLogs"]["Properties"]
    assert logs["LogGroupName"] == {"Fn::Sub": ["/aws/rds/cluster/${Cluster}/postgresql", {"Cluster": CLUSTER_ID}]}
    assert cluster["DependsOn"] == "DatabaseLogs"
    # Every instance: Performance Insights (with the key) and Enhanced Monitoring.
    writer, reader = resources["DatabaseInstance"], resources["DatabaseReaderInstance"]
    for instance in (writer["Properties"], reader["Properties"]):
        assert instance["EnablePerformanceInsights"] is True
        assert instance["PerformanceInsightsKMSKeyId"] == IF_KMS_KEY
        assert instance["MonitoringInterval"] == 60
        assert instance["PubliclyAccessible"] is False
    # The reader only with two zones, in the second; the writer then pinned to the first.
    zones = {"Ref": "DatabaseAvailabilityZones"}
    assert reader["Condition"] == "HasDatabaseReader"
    assert reader["Properties"]["AvailabilityZone"] == {"Fn::Select": [1, zones]}
    assert writer["Properties"]["AvailabilityZone"] == {
        "Fn::If": ["HasDatabaseReader", {"Fn::Select": [0, zones]}, {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["DatabaseAvailabilityZones"]["Default"] == ""


def test_the_created_database_refuses_plain_text_and_sets_the_migrations_timeouts(template):
    parameters = template["Resources"]["DatabaseParameterGroup"]["Properties"]["Parameters"]
    assert parameters["rds.force_ssl"] == 1
    migration = (ROOT / "migrations/0005_session_defaults.sql").read_text()
    assert "statement_timeout = %L', current_database(), '5s'" in migration
    assert parameters["statement_timeout"] == 5_000
    assert "current_database(),\n        '10s'" in migration
    assert parameters["idle_in_transaction_session_timeout"] == 10_000
    # And it can be verified, so it must be.
    rule = template["Rules"]["CreatedDatabaseIsVerified"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "CreateDatabase"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DatabaseSslMode"}, "require"]}]}


def test_every_log_group_expires_and_takes_the_key(template):
    groups = {name: resource["Properties"] for name, resource in template["Resources"].items()
              if resource["Type"] == "AWS::Logs::LogGroup"}
    assert len(groups) >= 9, sorted(groups)
    for name, properties in groups.items():
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name
        assert properties["KmsKeyId"] == IF_KMS_KEY, name


# ---------------------------------------------------------------- capacity (docs/production.md, Capacity)

# What each API function's environment holds: one connection (one invocation at a time).
CONNECTIONS_PER_ENVIRONMENT = 1
# Each environment counted this many times: two versions side by side during a canary, and the
# sessions of environments Lambda reclaimed before the server's idle_session_timeout closed them.
SESSIONS_PER_ENVIRONMENT = 3
# Besides the API: migrate's session, the scheduled purge's, and a rotation's two (the master's,
# the new login's test).
MIGRATE, PURGE, ROTATION = 1, 1, 2
# Never the API's: superuser_reserved_connections (3) and rds.rds_superuser_reserved_connections (2).
RESERVED_BY_THE_SERVER = 5


def template_with(functions):
    """template.yaml as devtools/template.py writes it for `functions` API functions: the
    declared routes, and as many more as it takes (`GET /users/{id}/extra-<n>`, each served by
    a function of its own), as a README-following change would add them."""
    routes = declared_routes()
    routes += [Route(f"extra_{n}", "GET", f"/users/{{id}}/extra-{n}", "UsersRead", f"extra-{n}")
               for n in range(functions - len(routes))]
    api = generator.the_api(routes)
    return cfn_yaml.loads(generator.fill(generator.TEMPLATE.read_text(), generator.TEMPLATE_PARTS, api))


@pytest.fixture(scope="module", params=[6, 7, 8, 12], ids=lambda n: f"{n} functions")
def sized(request):
    """The template for 6 (today's), 7, 8 and 12 API functions: what capacity must hold for any
    (with migrate and the purge, 8 makes 10 functions: the summed alarms split 9 and 1)."""
    return template_with(request.param)


def budgets(template):
    return template["Parameters"]["DatabaseConnectionBudget"]["AllowedValues"]


def budget_value(template, budget, key):
    """A `!FindInMap [ConnectionBudget, !Ref DatabaseConnectionBudget, key]`, for `budget`."""
    return template["Mappings"]["ConnectionBudget"][str(budget)][key]


def from_budget(node, template, budget):
    assert node["Fn::FindInMap"][:2] == ["ConnectionBudget", {"Ref": "DatabaseConnectionBudget"}], node
    return budget_value(template, budget, node["Fn::FindInMap"][2])


def api_functions(template):
    resources = template["Resources"]
    return {aliased_function(r["Properties"]["IntegrationUri"]) for r in resources.values()
            if r["Type"] == "AWS::ApiGatewayV2::Integration"}


# Lambda's default concurrency per account and Region, of which 100 must stay unreserved.
ACCOUNT_CONCURRENCY, UNRESERVED = 1000, 100


def by_topology(node, condition="UseRdsProxyCondition"):
    """The (through the proxy, directly) branches of a `!If [<condition>, …]`."""
    named, proxied, direct = node["Fn::If"]
    assert named == condition, node
    return proxied, direct


def test_managed_instances_keep_the_budgets_throttle_behind_the_proxy_too(template):
    """Managed Instances' environments follow the budget in either topology, so the proxied
    throttle applies only to on-demand environments."""
    assert template["Conditions"]["ProxiedOnDemand"] == {"Fn::And": [
        {"Condition": "UseRdsProxyCondition"}, {"Condition": "OnDemandEnvironments"}]}
    settings = template["Resources"]["ApiStage"]["Properties"]["DefaultRouteSettings"]
    for key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
        by_topology(settings[key], "ProxiedOnDemand")


def worst_case(template, budget, proxied):
    """The most connections the database serves, from the template's own numbers: the API's
    (every environment's sessions directly, or the proxy's pool), migrate's, the purge's and a
    rotation's."""
    resources = template["Resources"]
    concurrency = [from_budget(by_topology(resources[f]["Properties"]["ReservedConcurrentExecutions"])[1],
                               template, budget)
                   for f in api_functions(template)]
    sessions = sum(concurrency) * CONNECTIONS_PER_ENVIRONMENT * SESSIONS_PER_ENVIRONMENT
    pool_config = resources["RdsProxyTargetGroup"]["Properties"]["ConnectionPoolConfigurationInfo"]
    percent = from_budget(pool_config["MaxConnectionsPercent"], template, budget)
    max_connections = budget_value(template, budget, "DatabaseMaxConnections")
    pool = max_connections * percent // 100
    api = pool if proxied else sessions
    return {"sessions": sessions, "pool": pool, "concurrency": sum(concurrency),
            "database": api + MIGRATE + PURGE + ROTATION, "max_connections": max_connections}


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "through the proxy"])
def test_the_worst_case_fits_the_databases_max_connections_for_every_budget(sized, proxied):
    for budget in budgets(sized):
        case = worst_case(sized, budget, proxied)

        assert case["database"] <= case["max_connections"] - RESERVED_BY_THE_SERVER, (budget, case)
        if proxied:
            # The budget is the proxy's pool: the largest share of max_connections within B.
            percent = budget_value(sized, budget, "ProxyMaxConnectionsPercent")
            assert case["pool"] <= budget < case["max_connections"] * (percent + 1) // 100, (budget, case)
        else:
            assert case["sessions"] <= budget, (budget, case)


def test_through_the_proxy_the_environments_and_throttles_follow_the_load_not_max_connections(sized):
    """Behind the proxy, the environments are the proxy's clients: each API function's reserved
    concurrency is ProxiedFunctionConcurrency, whatever the budget, each route takes a burst of as
    many, and the default fits the account's default concurrency with the rest of the stack."""
    resources = sized["Resources"]
    parameter = sized["Parameters"]["ProxiedFunctionConcurrency"]
    for function in api_functions(sized):
        proxied, _ = by_topology(resources[function]["Properties"]["ReservedConcurrentExecutions"])
        assert proxied == {"Ref": "ProxiedFunctionConcurrency"}, function
    settings = resources["ApiStage"]["Properties"]["DefaultRouteSettings"]
    for concurrency in parameter["AllowedValues"]:
        row = sized["Mappings"]["ProxiedCapacity"][str(concurrency)]
        for key, column in (("ThrottlingBurstLimit", "RouteBurst"), ("ThrottlingRateLimit", "RouteRate")):
            proxied, _ = by_topology(settings[key], "ProxiedOnDemand")
            assert proxied == {"Fn::FindInMap": [
                "ProxiedCapacity", {"Ref": "ProxiedFunctionConcurrency"}, column]}, key
        assert row == {"RouteBurst": concurrency, "RouteRate": 25 * concurrency}, concurrency
    default = parameter["Default"]
    reserved = len(api_functions(sized)) * default + MIGRATE + PURGE
    assert reserved <= ACCOUNT_CONCURRENCY - UNRESERVED, reserved
    if len(api_functions(sized)) == len(declared_routes()):
        # Today's: a burst of at least 100 at once on a route (e2e/tests/gateway.rs proves it
        # behind PgBouncer).
        assert default >= 100


def test_adding_functions_switches_no_deploy_option_off(sized):
    """Every allowed parameter combination is either refused by a rule or fits the database,
    and each option stays reachable: every budget gives each function an environment, every
    Managed Instances concurrency fits some budget, and the default budget takes Managed
    Instances (the hand-computed tables once left them valid only at 144 with 2, for seven
    functions)."""
    rule = sized["Rules"]["ManagedInstancesFitTheBudget"]["Assertions"][0]["Assert"]
    parameters = sized["Parameters"]
    allowed_budgets = parameters["DatabaseConnectionBudget"]["AllowedValues"]
    managed = parameters["ManagedInstancesConcurrency"]["AllowedValues"]
    assert parameters["DatabaseConnectionBudget"]["Default"] in allowed_budgets
    assert parameters["ProxiedFunctionConcurrency"]["Default"] in (
        parameters["ProxiedFunctionConcurrency"]["AllowedValues"])
    reachable = set()
    for budget in allowed_budgets:
        assert budget_value(sized, budget, "FunctionConcurrency") >= 1, budget
        for concurrency in managed:
            if concurrency and rule_holds(rule, {"DatabaseConnectionBudget": str(budget),
                                                 "ManagedInstancesConcurrency": str(concurrency)}):
                reachable.add(concurrency)
                if budget == parameters["DatabaseConnectionBudget"]["Default"]:
                    reachable.add("at the default budget")
        for proxied in (False, True):
            case = worst_case(sized, budget, proxied)
            assert case["database"] <= case["max_connections"] - RESERVED_BY_THE_SERVER, (budget, case)
    assert reachable == {c for c in managed if c} | {"at the default budget"}, reachable


def summed_alarms(template):
    """{kind: [logical id, ...]}: FunctionErrorsAlarm, FunctionErrors2Alarm, ... as they exist."""
    def number(name):
        return int(re.fullmatch(r"\D+(\d*)Alarm", name)[1] or 1)
    return {kind: sorted((name for name in template["Resources"]
                          if re.fullmatch(rf"{kind}\d*Alarm", name)), key=number)
            for kind in ("FunctionErrors", "FunctionThrottles")}


def test_the_summed_alarms_cover_every_function_whatever_their_number(sized):
    """Every function's errors and throttles, once, in alarms that notify, for 6, 7, 8 and 12
    API functions: at most 9 functions an alarm (CloudWatch's 10 metrics, the sum and one a
    function), FunctionErrorsAlarm first, then FunctionErrors2Alarm, ..."""
    resources = sized["Resources"]
    # By name: a function is one of two resources (on demand, on managed instances).
    names = {r["Properties"]["FunctionName"]["Fn::Sub"] for r in resources.values()
             if r["Type"] == "AWS::Serverless::Function"}
    assert len(names) == len(api_functions(sized)) + 2, "the API's, migrate and the purge"
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for kind, parts in summed_alarms(sized).items():
        expected = math.ceil(len(names) / generator.MOST_SUMMED_FUNCTIONS)
        assert parts == [f"{kind}{n if n > 1 else ''}Alarm" for n in range(1, expected + 1)], parts
        summed = []
        for part in parts:
            alarm = resources[part]
            assert alarm["Type"] == "AWS::CloudWatch::Alarm", part
            properties = alarm["Properties"]
            assert properties["AlarmActions"] == notify and properties["OKActions"] == notify, part
            assert properties["TreatMissingData"] == "notBreaching", part
            metrics = properties["Metrics"]
            assert len(metrics) <= 10, f"{part}: CloudWatch's most metrics in an alarm"
            [total] = [m for m in metrics if m.get("ReturnData")]
            assert total["Expression"] == f"SUM([{', '.join(m['Id'] for m in metrics if m is not total)}])"
            summed += [dimension["Value"]["Fn::Sub"] for m in metrics if "MetricStat" in m
                       for dimension in m["MetricStat"]["Metric"]["Dimensions"]]
        assert sorted(summed) == sorted(names), f"{kind}: every function, once"


def test_adding_functions_changes_no_resources_type(sized, template):
    """CloudFormation cannot update a resource into another type: a logical id that today's
    template has keeps its type in a template with more functions."""
    for name, resource in template["Resources"].items():
        if name in sized["Resources"]:
            assert sized["Resources"][name]["Type"] == resource["Type"], name


def rule_holds(node, parameters):
    """A rule's assertion evaluated for these parameter values (as strings, as rules see them)."""
    if isinstance(node, dict):
        [(function, arguments)] = node.items()
        if function == "Ref":
            return parameters[arguments]
        values = [rule_holds(argument, parameters) for argument in arguments]
        return {
            "Fn::Equals": lambda: str(values[0]) == str(values[1]),
            "Fn::Not": lambda: not values[0],
            "Fn::And": lambda: all(values),
            "Fn::Or": lambda: any(values),
            "Fn::Contains": lambda: str(values[1]) in [str(v) for v in values[0]],
        }[function]()
    if isinstance(node, list):
        return [rule_holds(item, parameters) for item in node]
    return node


def test_on_managed_instances_every_function_keeps_to_its_share_of_the_budget(sized):
    rule = sized["Rules"]["ManagedInstancesFitTheBudget"]
    environments = sized["Mappings"]["ManagedEnvironments"]
    concurrencies = [c for c in sized["Parameters"]["ManagedInstancesConcurrency"]["AllowedValues"] if c]
    for budget in budgets(sized):
        share = budget_value(sized, budget, "FunctionConcurrency")
        for concurrency in concurrencies:
            parameters = {"DatabaseConnectionBudget": str(budget),
                          "ManagedInstancesConcurrency": str(concurrency)}
            allowed = rule_holds(rule["Assertions"][0]["Assert"], parameters)
            mapped = environments[str(budget)].get(str(concurrency))
            # The template accepts exactly the combinations it has a size for.
            assert allowed == (mapped is not None), parameters
            if mapped is not None:
                assert 1 <= mapped and mapped * concurrency <= share, parameters
    for name in api_functions(sized):
        managed = sized["Resources"][name.replace("Function", "ManagedFunction")]["Properties"]
        assert managed["FunctionScalingConfig"]["MaxExecutionEnvironments"] == {"Fn::FindInMap": [
            "ManagedEnvironments", {"Ref": "DatabaseConnectionBudget"}, {"Ref": "ManagedInstancesConcurrency"}]}


def test_the_created_database_and_the_proxy_are_sized_from_the_budget(template):
    resources = template["Resources"]
    parameters = resources["DatabaseParameterGroup"]["Properties"]["Parameters"]
    assert parameters["max_connections"] == {"Fn::FindInMap": [
        "ConnectionBudget", {"Ref": "DatabaseConnectionBudget"}, "DatabaseMaxConnections"]}
    assert resources["DatabaseCluster"]["Properties"]["DBClusterParameterGroupName"] == {
        "Ref": "DatabaseParameterGroup"}
    # Sessions of reclaimed environments go within the idle timeout the model counts on, on the
    # server (the migration's and the parameter group's) and at the proxy.
    migration = (ROOT / "migrations/0007_idle_session_timeout.sql").read_text()
    assert "idle_session_timeout = %L', current_database(), '5min'" in migration
    assert parameters["idle_session_timeout"] == 300_000
    assert resources["RdsProxy"]["Properties"]["IdleClientTimeout"] == 300
    # The proxy by default in front of a created database.
    assert template["Parameters"]["UseRdsProxy"]["Default"] == "auto"
    assert {"Fn::And": [{"Fn::Equals": [{"Ref": "UseRdsProxy"}, "auto"]},
                        {"Condition": "CreateDatabaseCondition"}]} in (
        template["Conditions"]["UseRdsProxyCondition"]["Fn::Or"])
    for budget in budgets(template):
        assert budget_value(template, budget, "DatabaseMaxConnections") == budget + 20


def test_every_route_is_throttled_to_what_its_functions_environments_serve(sized):
    resources = sized["Resources"]
    stage = resources["ApiStage"]["Properties"]
    for budget in budgets(sized):
        concurrency = budget_value(sized, budget, "FunctionConcurrency")
        _, burst = by_topology(stage["DefaultRouteSettings"]["ThrottlingBurstLimit"], "ProxiedOnDemand")
        _, rate = by_topology(stage["DefaultRouteSettings"]["ThrottlingRateLimit"], "ProxiedOnDemand")
        burst, rate = from_budget(burst, sized, budget), from_budget(rate, sized, budget)
        assert burst <= concurrency and rate == 25 * concurrency, budget
    for function in api_functions(sized):
        _, reserved = by_topology(resources[function]["Properties"]["ReservedConcurrentExecutions"])
        assert reserved["Fn::FindInMap"][2] == "FunctionConcurrency", function
    # Migrate: one run, one session, as the worst case counts it (MIGRATE).
    assert resources["MigrateFunction"]["Properties"]["ReservedConcurrentExecutions"] == MIGRATE


def test_the_routes_that_serve_no_user_go_at_a_health_checks_pace(template):
    stage = template["Resources"]["ApiStage"]["Properties"]
    unauthenticated = {f"{method} {path}" for method, path, _ in other_method_routes(template)}
    unauthenticated.add("GET /health")
    assert set(stage["RouteSettings"]) == unauthenticated
    # Route settings name routes, which must exist before the stage.
    depends = {template["Resources"][name]["Properties"]["RouteKey"]
               for name in template["Resources"]["ApiStage"]["DependsOn"]}
    assert depends == unauthenticated
    for route, settings in stage["RouteSettings"].items():
        assert settings == {"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 5}, route


def test_migrate_logs_in_on_the_database_itself_not_through_the_proxy(template):
    variables = template["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DB_HOST"] == {"Fn::If": [
        "CreateDatabaseCondition", {"Fn::GetAtt": ["DatabaseCluster", "Endpoint.Address"]},
        {"Ref": "AWS::NoValue"}]}
    proxy_secrets = [auth["SecretArn"] for auth in template["Resources"]["RdsProxy"]["Properties"]["Auth"]]
    assert proxy_secrets == [APP_SECRET], "the proxy logs in as the API's role only"


@pytest.mark.parametrize("create_database,managed_instances", [
    ("true", "0"), ("false", "0"), ("true", str(generator.managed_concurrency_at_the_default()))])
def test_the_sam_transform_accepts_the_template_with_real_parameters(
        create_database, managed_instances, monkeypatch):
    """`sam validate` does not expand every property with parameter values (it lets an Fn::If
    through where SAM needs a plain string); the SAM translator itself, as CloudFormation runs
    it, does. CodeUri becomes an S3 location, as `sam package` makes it."""
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self):
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    template = yaml_parse((ROOT / "template.yaml").read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
    parameters = {
        "VpcId": "vpc-0123456789abcdef0",
        "SubnetIds": "subnet-1,subnet-2",
        "SecurityGroupIds": "sg-1",
        "CreateDatabase": create_database,
        "DatabaseSecretArn": "" if create_database == "true" else EXAMPLE_SECRET_ARN,
        "AppDatabaseSecretArn": "" if create_database == "true" else EXAMPLE_SECRET_ARN,
        "JwtJwksUrl": "https://idp.example/.well-known/jwks.json",
        "JwtIssuer": "https://idp.example",
        "JwtAudience": "users-api",
        "DatabaseConnectionBudget": str(generator.DEFAULT_BUDGET),
        "ManagedInstancesConcurrency": managed_instances,
        "DatabaseCaBundleLayer": "rds-ca-bundle:1",
        "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "DatabaseAvailabilityZones": "eu-west-1a,eu-west-1b" if create_database == "true" else "",
    }

    # Parameters the template's own rules accept (144 with 8 once stood here after a seventh
    # function had made the rule refuse them, and no test noticed).
    rule = template["Rules"]["ManagedInstancesFitTheBudget"]
    if managed_instances != "0":
        assert rule_holds(rule["Assertions"][0]["Assert"], parameters), parameters

    translated = transform(template, parameters, NoManagedPolicies())

    types = {resource["Type"] for resource in translated["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::ApiGatewayV2::Api", "AWS::Lambda::Version"} <= types


EXAMPLE_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:users-db-AbCdEf"


def test_iam_authentication_lets_each_api_function_connect_only_as_users_api(template):
    connect = {}
    for name, statement in statements(template):
        if "rds-db:connect" in as_list(statement["Action"]):
            connect.setdefault(name, []).append(statement["Resource"])
    assert sorted(connect) == sorted(n for n in functions_of(template) if n != "MigrateFunction")
    for name, resources in connect.items():
        text = json.dumps(resources)
        branches = text.count(":dbuser:")
        assert branches == 3 and text.count("/users_api") == branches, (name, text)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DB_IAM_USER"] == {"Fn::If": ["UseIamAuth", "users_api", {"Ref": "AWS::NoValue"}]}
    migrate = template["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"]
    assert migrate["DB_IAM_USER"] == "", "migrate logs in as the owner"


# ---------------------------------------------------------------- safe deploys and alarms

OPERATIONAL_ALARMS = {
    "ApiServerErrorRateAlarm", "ApiLatencyAlarm", "FunctionErrorsAlarm", "FunctionThrottlesAlarm",
    "DatabaseUnavailableAlarm", "MigrationFailuresAlarm",
}
TELEMETRY = (ROOT / "shared/src/telemetry/mod.rs").read_text()


def references(node):
    """Every `Ref` and `Fn::GetAtt` target in a template fragment, `${…}` in `Fn::Sub` too."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                local = set(variables)
                for name in re.findall(r"\$\{([\w:.]+)\}", text):
                    if name not in local:
                        yield name.split(".")[0] if not name.startswith("AWS::") else name
                yield from references(variables)
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def assert_refers_to_what_exists(template, name):
    known = set(template["Resources"]) | set(template["Parameters"])
    for target in references(template["Resources"][name]):
        base = target.split(".")[0]
        assert base in known or target.startswith("AWS::"), f"{name} refers to {target}"


def route_of(template, function):
    declared = template_routes(template) - other_method_routes(template)
    return next(f"{m} {p}" for m, p, folder in declared
                if folder == code_folder(template["Resources"][function]))


def metric_names(alarm):
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return {properties["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in properties["Metrics"] if "MetricStat" in m}


def test_every_api_function_shifts_its_alias_gradually_and_rolls_back_on_its_new_versions_alarms(template):
    assert template["Globals"]["Function"]["AutoPublishAlias"] == "live"
    assert template["Parameters"]["DeploymentPreferenceType"]["Default"].startswith("Canary")
    resources = template["Resources"]
    routed = {aliased_function(r["Properties"]["IntegrationUri"]) for r in resources.values()
              if r["Type"] == "AWS::ApiGatewayV2::Integration"}
    assert len(routed) == len(declared_routes())
    for function in routed:
        preference = resources[function]["Properties"]["DeploymentPreference"]
        assert preference["Type"] == {"Ref": "DeploymentPreferenceType"}, function
        alarms = [alarm["Ref"] for alarm in preference["Alarms"]]
        watched = set()
        for alarm in alarms:
            assert resources[alarm]["Type"] == "AWS::CloudWatch::Alarm", alarm
            assert_refers_to_what_exists(template, alarm)
            fragment = json.dumps(resources[alarm])
            # The new version only: its number, as CodeDeploy publishes it.
            assert json.dumps({"Fn::GetAtt": [function, "Version.Version"]}) in fragment, alarm
            watched |= metric_names(resources[alarm])
            if "MetricName" not in resources[alarm]["Properties"]:
                assert f'"{route_of(template, function)}"' in fragment, alarm
        assert watched == {"Errors", "Duration", "5xx", "Requests"}, function
    for metric in ("5xx", "Requests"):
        assert f'= "{metric}";' in TELEMETRY, f"the functions emit {metric}"


def test_the_operational_alarms_watch_what_exists_and_notify_the_optional_topic(sized):
    template = sized
    resources = template["Resources"]
    for name in OPERATIONAL_ALARMS | {n for parts in summed_alarms(template).values() for n in parts}:
        alarm = resources[name]["Properties"]
        assert_refers_to_what_exists(template, name)
        notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["AlarmActions"] == notify and alarm["OKActions"] == notify, name
        assert alarm["TreatMissingData"] == "notBreaching", name
    # FunctionErrorsAlarm and FunctionThrottlesAlarm: see
    # test_the_summed_alarms_cover_every_function_whatever_their_number.
    for name, metric in (("DatabaseUnavailableAlarm", "DatabaseAcquireFailures"),
                         ("MigrationFailuresAlarm", "MigrationFailures"),
                         ("DatabaseReaderFallbacksAlarm", "DatabaseReaderFallbacks")):
        query = resources[name]["Properties"]["Metrics"][0]["Expression"]["Fn::Sub"]
        assert f"SUM({metric})" in query and "route, service, version" in query, name
        assert f'= "{metric}";' in TELEMETRY, f"the functions emit {metric}"


def test_the_dashboard_shows_the_alarms_and_every_log_group_expires(sized):
    template = sized
    resources = template["Resources"]
    assert_refers_to_what_exists(template, "Dashboard")
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    shown = set()
    for name, value in body[1].items():
        # FunctionAlarms: the summed alarms' ARNs joined into the items of one JSON list.
        references = value["Fn::Join"][1] if "Fn::Join" in value else [value]
        assert "Fn::Join" not in value or value["Fn::Join"][0] == '", "', name
        assert f'"${{{name}}}"' in body[0], f"the body shows {name}"
        shown |= {ref["Fn::GetAtt"][0] for ref in references}
    summed = {n for parts in summed_alarms(template).values() for n in parts}
    assert shown == OPERATIONAL_ALARMS | summed
    # The body, substituted as CloudFormation would (every other ${...} as 1), is JSON whose
    # alarm widget lists each alarm once.
    arns = {name: [f"arn:{ref['Fn::GetAtt'][0]}" for ref in
                   (value["Fn::Join"][1] if "Fn::Join" in value else [value])]
            for name, value in body[1].items()}
    text = body[0]
    for name, items in arns.items():
        text = text.replace(f"${{{name}}}", '", "'.join(items))
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "1", text))["widgets"]
    [listed] = [w["properties"]["alarms"] for w in widgets if w["type"] == "alarm"]
    assert sorted(listed) == sorted(f"arn:{name}" for name in shown)
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name
    for name, resource in functions_of(template).items():
        group = resource["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name


def test_the_reading_functions_read_through_the_proxys_read_only_endpoint_when_there_is_a_reader(template):
    """docs/production.md, Readers: the scoped GET routes' functions read on the cluster's
    readers through RDS Proxy's read-only endpoint, and only behind the proxy (Aurora's own
    reader endpoint points at the writer while no reader is up)."""
    resources = template["Resources"]
    endpoint = resources["RdsProxyReaderEndpoint"]
    assert endpoint["Condition"] == "ProxiedReader"
    assert template["Conditions"]["ProxiedReader"] == {"Fn::And": [
        {"Condition": "UseRdsProxyCondition"}, {"Condition": "HasDatabaseReader"}]}
    assert endpoint["Properties"]["TargetRole"] == "READ_ONLY"
    assert endpoint["Properties"]["DBProxyName"] == {"Ref": "RdsProxy"}
    proxy = resources["RdsProxy"]["Properties"]
    for key in ("VpcSubnetIds", "VpcSecurityGroupIds"):
        assert endpoint["Properties"][key] == proxy[key], key
    wired = set()
    for resource in functions_of(template).values():
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "DB_READER_HOST" in variables:
            assert variables["DB_READER_HOST"] == {"Fn::If": [
                "ProxiedReader", {"Fn::GetAtt": ["RdsProxyReaderEndpoint", "Endpoint"]},
                {"Ref": "AWS::NoValue"}]}
            wired.add(code_folder(resource))
    assert wired == {route.function for route in declared_routes()
                     if route.method == "GET" and route.scope}
    assert "DB_READER_HOST" not in template["Globals"]["Function"]["Environment"]["Variables"]
    # A reader that stopped serving is an alarm, where there is one.
    alarm = resources["DatabaseReaderFallbacksAlarm"]
    assert alarm["Condition"] == "ProxiedReader"
    assert_refers_to_what_exists(template, "DatabaseReaderFallbacksAlarm")
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert alarm["Properties"]["AlarmActions"] == notify
