"""The OIDC provider's services: plain Python over the database, called from web, CLI and gRPC."""
