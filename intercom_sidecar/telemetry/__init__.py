"""OpenTelemetry: the tracer provider, and the names of every span and attribute (in `names`)."""
