"""Build, package and deploy: the bento, images, manifests, DVC stages, retention, smoke test,
Grafana dashboards as code."""
