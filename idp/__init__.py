"""Central customer IDs, product accounts, identifiers and merges (and, later, the OIDC provider)."""
