"""Legacy accounts: import, record linkage, review and un-merge (issue 6)."""
