"""Writes what follows from the route declarations into template.yaml and Cargo.toml.

    python3 -m devtools.template          # rewrite the generated parts (`make template`)
    python3 -m devtools.template --check  # fail if they differ from what the routes give

Each route is declared once, in `shared/src/routes/<module>.rs` (`devtools/routes.py` reads the
declarations). From them and the folders in `functions/`, this writes, between the marker lines
`# generated: <part>` and `# end of generated: <part>`:

- in template.yaml, each API function's resources (on-demand and Managed Instances, log group,
  route, integration, permission, canary alarm), a route for every other method of each path
  (its function answers 405), the stage's throttles for them, the alarms summed over every
  function (9 an alarm) and the dashboard's list of them, the outputs, and the capacity: how
  the connection budget splits across the API functions (`FunctionConcurrency` is the budget
  over three times their number), the environments on Managed Instances, the rule that
  refuses a combination the budget cannot hold, and the parameters' allowed values and
  descriptions, which state those numbers;
- in Cargo.toml, `cargo lambda watch`'s router.

The rest of both files is written by hand. The generated parts are committed, so that the
template stays a plain SAM file that reviewers read and `sam deploy` takes as it is; `make test`
fails when they are stale (tests/test_template.py), as it does for `.sqlx/`.
"""
import re
import sys
import textwrap
from dataclasses import dataclass

from devtools.paths import ROOT
from devtools.routes import Route, declared_routes

TEMPLATE = ROOT / "template.yaml"
MANIFEST = ROOT / "Cargo.toml"

# ---------------------------------------------------------------- capacity (docs/production.md)

BUDGETS = [36, 72, 144, 288, 576]
DEFAULT_BUDGET = 72
PROXIED_CONCURRENCY = [50, 100, 200, 400]
# Lambda's default concurrency per account and Region, of which 100 must stay unreserved: what
# the default reservations behind the proxy fit in.
ACCOUNT_CONCURRENCY, UNRESERVED = 1000, 100
MANAGED_CONCURRENCY = [2, 4, 8, 16, 32]
# Each environment's connection counted three times: two versions side by side during a
# canary, and the sessions of environments Lambda reclaimed before idle_session_timeout.
SESSIONS_PER_ENVIRONMENT = 3
# Requests a second one environment serves, at 40 ms a request: a route's throttle rate.
REQUESTS_PER_SECOND = 25
# A created database's max_connections above the budget: migrate, the purge, a rotation's two,
# the server's reserved slots and operators.
BEYOND_THE_BUDGET = 20

# The methods the gateway routes on every path (the declared ones, and a 405 route for each of
# the others). Never OPTIONS, nor ANY, which takes OPTIONS too: with no route for it, API
# Gateway answers a browser's preflight from the CORS configuration.
GATEWAY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
# The methods `cargo lambda watch` routes for the 405s (it routes by exact method, and answers
# preflights itself).
WATCH_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "QUERY"]


def function_concurrency(budget, functions):
    """Each API function's reserved concurrency for a budget: its share of the connections."""
    return budget // (SESSIONS_PER_ENVIRONMENT * functions)


def proxy_percent(budget):
    """An RDS Proxy's MaxConnectionsPercent: the largest share of max_connections within B."""
    connections = budget + BEYOND_THE_BUDGET
    return max(p for p in range(1, 101) if connections * p // 100 <= budget)


@dataclass(frozen=True)
class Capacity:
    functions: int
    # The other functions' reserved concurrency (migrate's and the purge's: one each).
    others: int

    @property
    def budgets(self):
        """The budgets that give every API function at least one environment."""
        return [b for b in BUDGETS if function_concurrency(b, self.functions) >= 1]

    def environments(self, budget):
        """Managed Instances' environments per function, for each concurrency that fits."""
        share = function_concurrency(budget, self.functions)
        return {c: share // c for c in MANAGED_CONCURRENCY if share // c >= 1}

    @property
    def default_proxied_concurrency(self):
        """The most environments per function behind the proxy whose reservations, with the
        other functions', fit the account's default concurrency."""
        fits = [c for c in PROXIED_CONCURRENCY
                if c * self.functions + self.others <= ACCOUNT_CONCURRENCY - UNRESERVED]
        return max(fits, default=PROXIED_CONCURRENCY[0])

    @property
    def managed_concurrency(self):
        """The concurrencies some budget holds (0: on-demand environments)."""
        return [0] + [c for c in MANAGED_CONCURRENCY
                      if any(c in self.environments(b) for b in self.budgets)]


def managed_concurrency_at_the_default(api=None):
    """The most invocations per Managed Instances environment the default budget holds."""
    api = the_api() if api is None else api
    fits = api.capacity.environments(DEFAULT_BUDGET)
    assert fits, (f"{len(api.routes)} API functions: the default budget ({DEFAULT_BUDGET}) no longer "
                  "holds Managed Instances; raise DEFAULT_BUDGET")
    return max(fits)


# ---------------------------------------------------------------- names


def camel(function):
    """`get-user` -> `GetUser`: a function's resources' logical id prefix."""
    return "".join(part.capitalize() for part in function.split("-"))


# Logical id prefixes kept from the hand-written template: a route renamed would make
# CloudFormation create the new one before deleting the old, and API Gateway refuses a second
# route with the same key, so a stack deployed before would fail to update.
PATH_NAMES = {"/users": "Users", "/users/{id}": "User", "/health": "Health"}


def path_name(path):
    """`/users/{id}/summary` -> `UsersByIdSummary`: a path's 405 routes' logical id prefix."""
    if path in PATH_NAMES:
        return PATH_NAMES[path]
    parts = []
    for segment in path.strip("/").split("/"):
        match = re.fullmatch(r"\{(\w+)\}", segment)
        parts.append("By" + match[1].capitalize() if match else camel(segment))
    return "".join(parts)


def source_path(path):
    """A route's path as API Gateway's source ARN spells it: a path parameter is `*`."""
    return re.sub(r"\{[^}]+\}", "*", path)


SCOPE_PARAMETER = {"UsersRead": "JwtScopeRead", "UsersWrite": "JwtScopeWrite"}


@dataclass(frozen=True)
class Api:
    routes: list
    other_functions: list  # functions no route names (migrate, the purge)

    @property
    def paths(self):
        return list(dict.fromkeys(route.path for route in self.routes))

    def on(self, path):
        return [route for route in self.routes if route.path == path]

    def other_methods(self, path):
        """The methods of `path` no route declares, and the function that answers them 405:
        the path's first declared route's."""
        declared = {route.method for route in self.on(path)}
        return [m for m in GATEWAY_METHODS if m not in declared], self.on(path)[0].function

    def public(self, path):
        """Every route of `path` public: its 405s need no token either."""
        return all(route.scope is None for route in self.on(path))

    @property
    def capacity(self):
        return Capacity(len(self.routes), len(self.other_functions))

    @property
    def functions(self):
        return [route.function for route in self.routes] + self.other_functions


def the_api(routes=None):
    routes = declared_routes() if routes is None else routes
    routed = {route.function for route in routes}
    others = sorted(p.name for p in (ROOT / "functions").iterdir()
                    if (p / "Cargo.toml").exists() and p.name not in routed)
    return Api(routes, others)


# ---------------------------------------------------------------- template.yaml parts


def check_capacity(api):
    """Fails, saying why, where the routes outgrow what the budgets can split."""
    capacity, n = api.capacity, len(api.routes)
    assert DEFAULT_BUDGET in capacity.budgets, (
        f"{n} API functions: the default budget ({DEFAULT_BUDGET}) gives each less than one "
        "environment; raise DEFAULT_BUDGET and the budgets")
    assert len(capacity.managed_concurrency) > 1, f"{n} API functions: no budget holds Managed Instances"
    reserved = capacity.default_proxied_concurrency * n + capacity.others
    assert reserved <= ACCOUNT_CONCURRENCY - UNRESERVED, (
        f"{n} API functions reserve {reserved} environments behind the proxy at the least, more "
        "than the account's default concurrency leaves")


def description(text, indent=6):
    """A parameter's description as a folded block, wrapped to the template's width."""
    lines = textwrap.wrap(" ".join(text.split()), width=96 - indent)
    return "    Description: >\n" + "".join(f"{' ' * indent}{line}\n" for line in lines)


def capacity_parameters(api):
    check_capacity(api)
    capacity, n = api.capacity, len(api.routes)
    share = SESSIONS_PER_ENVIRONMENT * n
    budget = description(f"""
        The most database connections the {n} API functions may hold at once, at worst
        (docs/production.md, Capacity). Through RDS Proxy, it is the proxy's pool (its share of
        max_connections, computed for budget plus {BEYOND_THE_BUDGET}), and
        ProxiedFunctionConcurrency sets the environments. Directly (and on Managed Instances),
        each function's reserved concurrency is 1/{share} of it ({SESSIONS_PER_ENVIRONMENT} x {n}
        functions: each environment holds a connection; a canary runs two versions'
        environments side by side; reclaimed environments leave their sessions for up to
        idle_session_timeout), and its routes are throttled to match. A created database gets
        max_connections of the budget plus {BEYOND_THE_BUDGET} (migrate, the purge, rotation,
        reserved slots, operators). For an existing database, choose a budget
        {BEYOND_THE_BUDGET} below its max_connections.""")
    proxied = description(f"""
        Behind RDS Proxy (UseRdsProxy), each API function's reserved concurrency: its most
        execution environments, and its routes' throttle (burst of as many,
        {REQUESTS_PER_SECOND} a second each). The proxy lends its pool (DatabaseConnectionBudget
        connections) a transaction at a time, so environments are bounded by the load and the
        account ({n} functions' reservations come out of the account's concurrency, 1000 by
        default, of which 100 stay unreserved), not by max_connections. Directly against the
        database, DatabaseConnectionBudget sets it.""")
    managed = description(f"""
        0 runs the API functions in Lambda's on-demand execution environments, one invocation
        at a time each. N runs them on Lambda Managed Instances (a capacity provider in the
        subnets above): each execution environment takes up to N invocations at once, on up to
        N connections, opened as needed; each function gets its share of the budget divided by
        N in environments. N may be at most DatabaseConnectionBudget / {share}.""")
    return f"""\
  DatabaseConnectionBudget:
    Type: Number
    AllowedValues: [{", ".join(map(str, capacity.budgets))}]
    Default: {DEFAULT_BUDGET}
{budget}\
  ProxiedFunctionConcurrency:
    Type: Number
    AllowedValues: [{", ".join(map(str, PROXIED_CONCURRENCY))}]
    Default: {capacity.default_proxied_concurrency}
{proxied}\
  ManagedInstancesConcurrency:
    Type: Number
    AllowedValues: [{", ".join(map(str, capacity.managed_concurrency))}]
    Default: 0
{managed}"""


NO_ENVIRONMENTS = '"0": 0'


def capacity_mappings(api):
    capacity, n = api.capacity, len(api.routes)
    rows = []
    for budget in capacity.budgets:
        concurrency = function_concurrency(budget, n)
        rows.append(
            f'    "{budget}": {{ FunctionConcurrency: {concurrency}, '
            f"DatabaseMaxConnections: {budget + BEYOND_THE_BUDGET}, "
            f"ProxyMaxConnectionsPercent: {proxy_percent(budget)}, "
            f"RouteBurst: {concurrency}, RouteRate: {REQUESTS_PER_SECOND * concurrency} }}")
    proxied = [f'    "{c}": {{ RouteBurst: {c}, RouteRate: {REQUESTS_PER_SECOND * c} }}'
               for c in PROXIED_CONCURRENCY]
    managed = []
    for budget in capacity.budgets:
        # A budget no concurrency fits keeps a row (a mapping needs one per key looked up).
        cells = ", ".join(f'"{c}": {e}' for c, e in capacity.environments(budget).items())
        managed.append(f'    "{budget}": {{ {cells or NO_ENVIRONMENTS} }}')
    return f"""\
  # What DatabaseConnectionBudget (B) sets for the {n} API functions:
  #   FunctionConcurrency: each one's reserved concurrency, B / {SESSIONS_PER_ENVIRONMENT * n}, rounded down.
  #   DatabaseMaxConnections: a created database's max_connections, B + {BEYOND_THE_BUDGET}.
  #   ProxyMaxConnectionsPercent: an RDS Proxy's pool, the largest share of that within B.
  #   RouteBurst, RouteRate: each route's throttle, what its function's environments serve at
  #     40 ms a request, so excess is refused by API Gateway (429) rather than by Lambda.
  ConnectionBudget:
{chr(10).join(rows)}

  # Behind RDS Proxy: each route's throttle for each function's reserved concurrency (R
  # environments serve a burst of R, and {REQUESTS_PER_SECOND} R a second).
  ProxiedCapacity:
{chr(10).join(proxied)}

  # Lambda Managed Instances: each function's environments for a budget (rows) and invocations
  # per environment (columns), FunctionConcurrency / N rounded down, where at least one fits.
  ManagedEnvironments:
{chr(10).join(managed)}
"""


def capacity_rule(api):
    capacity = api.capacity
    clauses = []
    for concurrency in capacity.managed_concurrency[1:]:
        fits = [str(b) for b in capacity.budgets if concurrency in capacity.environments(b)]
        equals = f'!Equals [!Ref ManagedInstancesConcurrency, "{concurrency}"]'
        if len(fits) == len(capacity.budgets):
            clauses.append(equals)
        else:
            budgets = ", ".join(f'"{b}"' for b in fits)
            clauses.append(f"!And [{equals}, !Contains [[{budgets}], !Ref DatabaseConnectionBudget]]")
    assertion = (clauses[0] if len(clauses) == 1
                 else "!Or\n" + "\n".join(f"          - {clause}" for clause in clauses))
    return f"""\
  ManagedInstancesFitTheBudget:
    RuleCondition: !Not [!Equals [!Ref ManagedInstancesConcurrency, "0"]]
    Assertions:
      - Assert: {assertion}
        AssertDescription: >
          ManagedInstancesConcurrency may be at most DatabaseConnectionBudget / {SESSIONS_PER_ENVIRONMENT * len(api.routes)}: each
          function's environments times the invocations each takes at once must fit its share
          of the connection budget.
"""


def stage_routes(api):
    """The stage's DependsOn and per-route throttles: the routes that serve no user (public
    ones, and every 405) at a health check's pace."""
    others = []
    slow = []
    for path in api.paths:
        methods, _ = api.other_methods(path)
        public = [route for route in api.on(path) if route.scope is None]
        others += [f"{camel(route.function)}Route" for route in public]
        others += [f"{path_name(path)}{method.capitalize()}Route" for method in methods]
        slow += [route.key for route in public]
        slow += [f"{method} {path}" for method in methods]
    depends = "\n".join(f"      - {name}" for name in others)
    settings = "\n".join(f"        {key}: {{ ThrottlingBurstLimit: 1, ThrottlingRateLimit: 5 }}"
                         for key in slow)
    return f"""\
    # Route settings name routes, which must exist first.
    DependsOn:
{depends}
    Properties:
      ApiId: !Ref Api
      StageName: $default
      AutoDeploy: true
      # Each route as much as its function's reserved environments serve: ProxiedFunctionConcurrency
      # behind RDS Proxy, DatabaseConnectionBudget directly.
      DefaultRouteSettings:
        ThrottlingBurstLimit: !If
          - ProxiedOnDemand
          - !FindInMap [ProxiedCapacity, !Ref ProxiedFunctionConcurrency, RouteBurst]
          - !FindInMap [ConnectionBudget, !Ref DatabaseConnectionBudget, RouteBurst]
        ThrottlingRateLimit: !If
          - ProxiedOnDemand
          - !FindInMap [ProxiedCapacity, !Ref ProxiedFunctionConcurrency, RouteRate]
          - !FindInMap [ConnectionBudget, !Ref DatabaseConnectionBudget, RouteRate]
      # The public routes and the other methods' 405s serve no user: a health check's pace, so
      # that a burst of them cannot take the environments (and connections) the API needs.
      RouteSettings:
{settings}
"""


def authorization(public, scope=None):
    """A route's authorization lines: none on a public route; otherwise the JWT authorizer
    (when on), with the route's scope if it has one (a 405 needs any valid token)."""
    if public:
        return "      AuthorizationType: NONE\n"
    lines = ("      AuthorizationType: !If [UseApiJwtAuthorizerCondition, JWT, NONE]\n"
             "      AuthorizerId: !If [UseApiJwtAuthorizerCondition, !Ref UsersJwtAuthorizer, !Ref AWS::NoValue]\n")
    if scope:
        lines += (f"      AuthorizationScopes: !If [UseApiJwtAuthorizerCondition, "
                  f"[!Ref {SCOPE_PARAMETER[scope]}], !Ref AWS::NoValue]\n")
    return lines


def reads_replica(route):
    """Whether the route's reads may go to a replica: a users route that only reads (GET, with
    a scope; the health check's ping is for the writer). Every read that guards a write is in
    that write's statement, on the writer."""
    return route.method == "GET" and route.scope is not None


def version(name):
    return (f"!If [UseManagedInstances, !GetAtt {name}ManagedFunction.Version.Version, "
            f"!GetAtt {name}Function.Version.Version]")


def function_resources(api, route: Route):
    name, function = camel(route.function), route.function
    methods, answering = api.other_methods(route.path)
    routed_methods = [route.method] + (methods if answering == function else [])
    method = route.method if len(routed_methods) == 1 else "*"
    lambda_dimensions = f"""\
              Dimensions:
                - {{ Name: FunctionName, Value: !Sub "${{AWS::StackName}}-{function}" }}
                - {{ Name: Resource, Value: !Sub "${{AWS::StackName}}-{function}:live" }}
                - {{ Name: ExecutedVersion, Value: {version(name)} }}"""
    route_dimensions = f"""\
              Dimensions:
                - {{ Name: service, Value: !Ref AWS::StackName }}
                - {{ Name: route, Value: "{route.key}" }}
                - {{ Name: version, Value: {version(name)} }}"""

    def metric(id_, namespace, metric_name, dimensions, stat):
        return f"""\
        - Id: {id_}
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: {namespace}
              MetricName: {metric_name}
{dimensions}
            Period: 60
            Stat: {stat}"""

    def head(suffix, condition):
        """What the two resources of the function share before their own properties: the same
        function either way (name, code), one of the two created."""
        return f"""\
  {name}{suffix}:
    Type: AWS::Serverless::Function
    Condition: {condition}
    DependsOn: Migrations
    Metadata:
      BuildMethod: rust-cargolambda
    Properties:
      FunctionName: !Sub ${{AWS::StackName}}-{function}
      CodeUri: functions/{function}"""

    reader = """\
      Environment:
        Variables:
          # Its reads on the cluster's readers, through the proxy (docs/production.md, Readers).
          DB_READER_HOST: !If [ProxiedReader, !GetAtt RdsProxyReaderEndpoint.Endpoint, !Ref AWS::NoValue]
""" if reads_replica(route) else ""
    shared = reader + f"""\
      DeploymentPreference:
        Type: !Ref DeploymentPreferenceType
        Alarms: [!Ref {name}CanaryAlarm]
      LoggingConfig:
        LogGroup: !Ref {name}Logs
      Policies: [!Ref ApiFunctionsPolicy]"""
    return f"""\
  # {route.key}: functions/{function} (shared/src/routes/{route.module}.rs)
{head("Function", "OnDemandEnvironments")}
      VpcConfig:
        SubnetIds: !Ref SubnetIds
        SecurityGroupIds: !Ref SecurityGroupIds
      ReservedConcurrentExecutions: !If
        - UseRdsProxyCondition
        - !Ref ProxiedFunctionConcurrency
        - !FindInMap [ConnectionBudget, !Ref DatabaseConnectionBudget, FunctionConcurrency]
{shared}

{head("ManagedFunction", "UseManagedInstances")}
      MemorySize: 2048
      CapacityProviderConfig:
        Arn: !Sub arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:capacity-provider:${{CapacityProvider}}
        PerExecutionEnvironmentMaxConcurrency: !Ref ManagedInstancesConcurrency
      FunctionScalingConfig:
        MaxExecutionEnvironments: !FindInMap [ManagedEnvironments, !Ref DatabaseConnectionBudget, !Ref ManagedInstancesConcurrency]
{shared}

  {name}Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /aws/lambda/${{AWS::StackName}}-{function}
      RetentionInDays: !Ref LogRetentionInDays
      KmsKeyId: !If [HasKmsKey, !Ref KmsKeyArn, !Ref AWS::NoValue]

  {name}Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: {route.key}
      Target: !Sub integrations/${{{name}Integration}}
{authorization(route.scope is None, route.scope)}
  {name}Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !If [UseManagedInstances, !Ref {name}ManagedFunction.Alias, !Ref {name}Function.Alias]
      PayloadFormatVersion: "2.0"

  {name}Permission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !If [UseManagedInstances, !Ref {name}ManagedFunction.Alias, !Ref {name}Function.Alias]
      Principal: apigateway.amazonaws.com
      SourceArn: !Sub arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{Api}}/*/{method}{source_path(route.path)}

  # The version being deployed: any failed invocation, a 5xx rate above the threshold, or a
  # p99 above the latency threshold, in a minute, rolls the deploy back.
  {name}CanaryAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: !Sub "${{AWS::StackName}}-{function}: the version being deployed failed invocations, answered too many 5xx or was slow at p99 (rolls the deploy back)."
      Metrics:
        - Id: breaches
          Expression: !Sub "MAX([IF(FILL(errors, 0) > 0, 1, 0), IF(100 * FILL(failed, 0) / FILL(requests, 1) > ${{ServerErrorRateThresholdPercent}}, 1, 0), IF(FILL(p99, 0) > ${{LatencyP99ThresholdMs}}, 1, 0)])"
          ReturnData: true
{metric("errors", "AWS/Lambda", "Errors", lambda_dimensions, "Sum")}
{metric("p99", "AWS/Lambda", "Duration", lambda_dimensions, "p99")}
{metric("failed", "!Ref MetricsNamespace", "5xx", route_dimensions, "Sum")}
{metric("requests", "!Ref MetricsNamespace", "Requests", route_dimensions, "Sum")}
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
"""


def other_method_routes(api):
    blocks = []
    for path in api.paths:
        methods, function = api.other_methods(path)
        for method in methods:
            blocks.append(f"""\
  {path_name(path)}{method.capitalize()}Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: {method} {path}
      Target: !Sub integrations/${{{camel(function)}Integration}}
{authorization(api.public(path))}""")
    return f"""\
  # Every other method of a path reaches one of its functions, which answers 405 with the
  # path's methods in `Allow` (API Gateway would answer a bare 404): a route per method, never
  # `ANY`, which would also take a browser's preflight (`OPTIONS`) away from the CORS
  # configuration, behind the authorizer (a preflight carries no token: 401) and this route's
  # throttle. With no route for OPTIONS, API Gateway answers preflights itself (CORS on), or
  # 404 (CORS off). Behind the authorizer for the users paths (no scope: a 405 says nothing
  # about any user, but a function that answers it runs, and holds a connection).
{chr(10).join(blocks)}"""


def functions_part(api):
    return "\n".join(function_resources(api, route) for route in api.routes) + "\n" + other_method_routes(api)


# CloudWatch takes at most 10 metrics in an alarm: the sum and one per function.
MOST_SUMMED_FUNCTIONS = 9


def summed_alarm_groups(api):
    """{logical id: the functions it sums}, for errors and throttles: `FunctionErrorsAlarm`
    for the first 9 functions, then `FunctionErrors2Alarm` for the next 9, and so on. A logical
    id keeps its type whatever the number of functions (CloudFormation cannot update a
    resource into another type), so a tenth function adds an alarm and changes none."""
    functions = api.functions
    groups = [functions[i:i + MOST_SUMMED_FUNCTIONS]
              for i in range(0, len(functions), MOST_SUMMED_FUNCTIONS)]
    return {kind: {f"{kind}{n if n > 1 else ''}Alarm": members
                   for n, members in enumerate(groups, start=1)}
            for kind in ("FunctionErrors", "FunctionThrottles")}


def summed_alarms(api):
    """Errors and throttles of every function, summed by metric math: one metric per function
    (by name: a function is one of two resources, on demand or on Managed Instances), 9
    functions an alarm (`summed_alarm_groups`), each alarm notifying."""
    kinds = {"FunctionErrors": ("Errors", "a function's invocations failed (an init failure, a "
                                          "timeout, a crash)"),
             "FunctionThrottles": ("Throttles", "Lambda throttled invocations (reserved or "
                                                "account concurrency reached)")}

    def alarm(name, metric, description, members):
        ids = [camel(function)[0].lower() + camel(function)[1:] for function in members]
        metrics = "\n".join(f"""\
        - Id: {id_}
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: AWS/Lambda
              MetricName: {metric}
              Dimensions: [{{ Name: FunctionName, Value: !Sub "${{AWS::StackName}}-{function}" }}]
            Period: 60
            Stat: Sum""" for id_, function in zip(ids, members))
        return f"""\
  {name}:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: !Sub "${{AWS::StackName}}: {description}."
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      Metrics:
        - Id: total
          Expression: SUM([{", ".join(ids)}])
          ReturnData: true
{metrics}
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
"""
    alarms = []
    for kind, groups in summed_alarm_groups(api).items():
        metric, description = kinds[kind]
        for name, members in groups.items():
            which = f" ({', '.join(members)})" if len(groups) > 1 else ""
            alarms.append(alarm(name, metric, description + which, members))
    return "\n".join(alarms)


def dashboard_alarms(api):
    """The dashboard's alarm widget takes every summed alarm: their ARNs as the items of one
    JSON list, `"${FunctionAlarms}"` in its body."""
    names = [name for groups in summed_alarm_groups(api).values() for name in groups]
    arns = ", ".join(f"!GetAtt {name}.Arn" for name in names)
    return f"""\
          FunctionAlarms: !Join ['", "', [{arns}]]
"""


def outputs(api):
    return "\n".join(f"""\
  {camel(route.function)}FunctionName:
    Value: !Sub ${{AWS::StackName}}-{route.function}""" for route in api.routes) + "\n"


def watch_router(api):
    lines = []
    for path in api.paths:
        methods, function = api.other_methods(path)
        declared = {route.method for route in api.on(path)}
        entries = [(route.method, route.function) for route in api.on(path)]
        entries += [(m, function) for m in WATCH_METHODS if m not in declared]
        lines.append(f'"{path}" = [')
        lines += [f'    {{ method = "{m}", function = "{f}" }},' for m, f in entries]
        lines.append("]")
    return "\n".join(lines) + "\n"


TEMPLATE_PARTS = {
    "capacity parameters": capacity_parameters,
    "capacity mappings": capacity_mappings,
    "capacity rule": capacity_rule,
    "stage routes": stage_routes,
    "functions": functions_part,
    "summed alarms": summed_alarms,
    "dashboard alarms": dashboard_alarms,
    "outputs": outputs,
}
MANIFEST_PARTS = {"watch router": watch_router}


# ---------------------------------------------------------------- markers


def fill(text, parts, api, comment="#"):
    """`text` with each part between its markers replaced by what `api` gives."""
    for name, generate in parts.items():
        pattern = re.compile(
            rf"^(?P<indent>[ ]*){comment} generated: {re.escape(name)}\b[^\n]*\n"
            rf".*?^(?P=indent){comment} end of generated: {re.escape(name)}\n",
            re.M | re.S)
        found = list(pattern.finditer(text))
        assert len(found) == 1, f"one `{comment} generated: {name}` part expected, found {len(found)}"
        indent = found[0]["indent"]
        replacement = (f"{indent}{comment} generated: {name} (make template: devtools/template.py)\n"
                       f"{generate(api)}"
                       f"{indent}{comment} end of generated: {name}\n")
        text = text[:found[0].start()] + replacement + text[found[0].end():]
    return text


def generated(api=None):
    """{file: (what it holds, what it should hold)}."""
    api = the_api() if api is None else api
    template, manifest = TEMPLATE.read_text(), MANIFEST.read_text()
    return {TEMPLATE: (template, fill(template, TEMPLATE_PARTS, api)),
            MANIFEST: (manifest, fill(manifest, MANIFEST_PARTS, api))}


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit("usage: python3 -m devtools.template [--check]")
    stale = []
    for path, (now, wanted) in generated().items():
        if now != wanted:
            stale.append(path.name)
            if not check:
                path.write_text(wanted)
    if check and stale:
        sys.exit(f"{', '.join(stale)}: the generated parts are stale; run `make template`")
    print(f"{'stale, rewritten' if stale else 'current'}: {', '.join(stale) or 'template.yaml, Cargo.toml'}")


if __name__ == "__main__":
    main()
