//! In-memory backend: live state held in a mutex. Used by tests and by the `state_file` target.
