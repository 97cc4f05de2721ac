"""clients/canary_audit."""
