//! Simulator tests of both windows.
