"""Central customer IDs, product accounts, identifiers and merges; later the OIDC provider."""
