"""The OpenID Connect provider: singleid signs customers in to every product (issue 3)."""
