"""singleid: one central customer ID, one login and one profile for a bank's ecosystem.

This package (the repository's ``core/`` folder) holds the plumbing every domain
stands on; nothing in it knows a domain.
"""
