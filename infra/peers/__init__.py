"""Local protocol peers that stand in for push, email and SMS providers in tests and benchmarks."""
