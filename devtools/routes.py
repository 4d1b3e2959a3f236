"""The routes as the Rust source declares them, once each (`pub const ROUTE: Route = Route {…}`
in `shared/src/routes/<module>.rs`, listed in `routes::ROUTES`): what the template, the watch
router and openapi.yaml are checked against (tests/test_template.py)."""
import re
from dataclasses import dataclass

from devtools.paths import ROOT

ROUTES_DIR = ROOT / "shared" / "src" / "routes"
DECLARATION = re.compile(
    r'pub const ROUTE: Route = Route \{\s*key: "(?P<method>[A-Z]+) (?P<path>[^"]+)",\s*'
    r'scope: (?:None|Some\(Scope::(?P<scope>\w+)\)),\s*function: "(?P<function>[a-z0-9-]+)",\s*\};'
)


@dataclass(frozen=True)
class Route:
    module: str
    method: str
    path: str
    scope: str | None  # the `Scope` variant: UsersRead, UsersWrite; None for a public route
    function: str

    @property
    def key(self):
        return f"{self.method} {self.path}"


def declared_routes():
    """Each route module's declaration, in `ROUTES`' order."""
    routes = {}
    for path in sorted(ROUTES_DIR.glob("*.rs")):
        if path.name == "mod.rs":
            continue
        found = list(DECLARATION.finditer(path.read_text()))
        assert len(found) == 1, f"{path}: one `pub const ROUTE: Route = Route {{…}}` expected"
        match = found[0]
        routes[path.stem] = Route(path.stem, match["method"], match["path"], match["scope"],
                                  match["function"])
    table = (ROUTES_DIR / "mod.rs").read_text()
    listed = re.search(r"pub const ROUTES: \[Route; \d+\] = \[(.*?)\];", table, re.S).group(1)
    order = re.findall(r"(\w+)::ROUTE\b", listed)
    assert sorted(order) == sorted(routes), f"routes::ROUTES lists {order}, the modules are {sorted(routes)}"
    return [routes[module] for module in order]
