"""Streaming the trail out: destinations (syslog, webhook, file), formats (json, ecs, cef), and the dispatcher
that delivers every sealed event in link order, at least once."""
