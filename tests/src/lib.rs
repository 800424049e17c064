//! Shared support for the workspace tests.
