"""OpenTelemetry out and back in (issue 17): span attribute names, span building, the exporter
(and the import's reading). Never imported unless OTLP is used; only exporter.py and what it
calls import opentelemetry."""
