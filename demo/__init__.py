"""``singleid demo``: a small ecosystem seeded on the configured database, to try singleid.

It is the one place that calls the services of several domains for a purpose
of its own; nothing imports it (an import-linter contract), see
docs/decisions/0701-a-demo-package-over-the-domains.md.
"""
