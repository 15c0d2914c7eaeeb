"""HTTP routes, one module per kind of caller. Handlers are thin: parse, call a
service, shape the answer."""
