"""federation/demo."""
