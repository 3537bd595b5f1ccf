"""RCA: the dependency graph learned from spans, and root-cause ranking on it."""
