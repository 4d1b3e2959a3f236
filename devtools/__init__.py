"""Python helpers shared by the scripts, the benchmark and the template tests.

Run them from the repository root as modules (`python3 -m devtools.dev_token`), so that
`import devtools` works without touching `sys.path`. The standard library is enough for
`paths`, `dev_token` and `sizes`; the rest need the project's virtualenv (`.venv/`).
"""
