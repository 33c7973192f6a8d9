"""Helpers of tests/integration/test_dashboards.py: the Grafana dashboard files, and a real
Prometheus (Debian's ``prometheus``) run on a loopback port."""
