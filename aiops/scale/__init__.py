"""Scaled-out arrangement: detect processes per partition group, one active incident stage."""
