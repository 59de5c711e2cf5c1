"""sockprobe's host runner: probe protocol parser, item execution in
namespaces, pytest plugin, reports and CLI."""
