"""Ingest: sources → decoders → validation → columnar batches; refused records → dead letter."""
