"""The scoring API: BentoML service, request models, event store, explanations."""
