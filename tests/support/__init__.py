"""Test scaffolding shared by tests and benchmarks: never imported by the product."""
