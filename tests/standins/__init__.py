"""Stand-in provider servers that speak each provider's wire protocol, for tests and benchmarks."""
