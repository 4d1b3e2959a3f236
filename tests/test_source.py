"""Rules on the Rust source that neither the compiler nor clippy enforces.

- Dependencies in the shared library run one way: no module imports from a module that imports
  it back (directly or through others), and `config` imports nothing from the crate.
- No file in the shared library has more than 400 lines of code before its tests: a concern
  that outgrows that becomes a folder of files.
- No crate embeds a file outside its own folder (`include_str!`, `include_bytes!`): cargo tracks
  such a file by its absolute path, so a target directory shared by checkouts could link
  another checkout's copy.
- No line is longer than rustfmt's `max_width`: rustfmt silently gives up on a macro call or a
  string it cannot fit, so such a line means code that `cargo fmt` no longer formats.
"""
import re

import pytest

from devtools.paths import ROOT

SHARED_SRC = ROOT / "shared" / "src"
MAX_WIDTH = 100  # rustfmt's default; the workspace has no rustfmt.toml


def top_level_modules():
    """Each module declared in lib.rs, with the files that make it up."""
    modules = {}
    for path in SHARED_SRC.iterdir():
        if path.name in ("lib.rs", "main.rs"):
            continue
        if path.is_dir():
            modules[path.name] = sorted(path.rglob("*.rs"))
        elif path.suffix == ".rs":
            modules[path.stem] = [path]
    return modules


def without_comments(source):
    return re.sub(r"//[^\n]*", "", source)


def crate_paths(source):
    """The first segment of every `crate::` path in `source`, `use crate::{a, b::c}` included."""
    names = set()
    for match in re.finditer(r"\bcrate::(\{|\w+)", source):
        if match.group(1) != "{":
            names.add(match.group(1))
            continue
        depth, start = 1, match.end()
        end = start
        while depth:
            depth += {"{": 1, "}": -1}.get(source[end], 0)
            end += 1
        names.update(top_level_items(source[start:end - 1]))
    return names


def top_level_items(group):
    """`a, b::{c, d}, e as f` -> a, b, e."""
    items, depth, current = [], 0, ""
    for char in group:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return {re.match(r"\s*(\w+)", item).group(1) for item in items if item.strip()}


def module_graph():
    modules = top_level_modules()
    graph = {}
    for name, files in modules.items():
        used = set()
        for path in files:
            used |= crate_paths(without_comments(path.read_text()))
        unknown = used - modules.keys()
        assert not unknown, f"{name} uses crate::{unknown}: import items through their module"
        graph[name] = used - {name}
    return graph


def test_the_path_parser_reads_nested_use_groups():
    source = "use crate::{auth::{A, B}, db, http::{self, C as D}};\nlet x = crate::users::find;"
    assert crate_paths(source) == {"auth", "db", "http", "users"}


def test_config_depends_on_nothing_else_in_the_crate():
    assert module_graph()["config"] == set()


MAX_FILE_LINES = 400


def test_no_file_in_the_shared_library_is_over_400_lines_before_its_tests():
    over = {}
    for path in SHARED_SRC.rglob("*.rs"):
        if path.name == "tests.rs":  # a module's tests, in a file of their own
            continue
        code = path.read_text().split("\n#[cfg(test)]\n")[0]
        lines = code.count("\n") + 1
        if lines > MAX_FILE_LINES:
            over[str(path.relative_to(ROOT))] = lines
    assert not over, f"over {MAX_FILE_LINES} lines before the tests: {over}"


def test_no_module_depends_on_a_module_that_depends_back_on_it():
    graph = module_graph()

    def reaches(start, goal, seen=()):
        return any(
            dependency == goal or (dependency not in seen and reaches(dependency, goal, seen + (dependency,)))
            for dependency in graph[start]
        )

    cycles = sorted(name for name in graph if reaches(name, name))
    assert not cycles, f"modules on a cycle: {cycles}; graph: {graph}"


def rust_files():
    for folder in ("shared", "functions", "e2e", "test-support"):
        yield from (path for path in (ROOT / folder).rglob("*.rs") if "target" not in path.parts)


@pytest.mark.parametrize("path", sorted(rust_files()), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_line_is_too_long_for_rustfmt(path):
    long_lines = [
        number
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if len(line) > MAX_WIDTH
    ]
    assert not long_lines, f"{path.relative_to(ROOT)}: lines {long_lines} exceed {MAX_WIDTH} characters"


def crate_folders():
    return [path.parent for path in ROOT.glob("**/Cargo.toml")
            if not {"target", "vendor", ".venv", ".tools"} & set(path.relative_to(ROOT).parts)
            and path.parent != ROOT]


def test_no_crate_embeds_a_file_outside_its_own_folder():
    folders = crate_folders()
    assert ROOT / "shared" in folders and ROOT / "test-support" in folders
    for folder in folders:
        for source in folder.rglob("*.rs"):
            for match in re.finditer(r"include_(?:str|bytes)!\(\s*\"([^\"]+)\"", source.read_text()):
                embedded = (source.parent / match[1]).resolve()
                assert embedded.is_relative_to(folder), f"{source.relative_to(ROOT)} embeds {match[1]}"
