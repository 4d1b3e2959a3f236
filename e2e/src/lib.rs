//! End-to-end test harness; the tests live in `tests/`.
