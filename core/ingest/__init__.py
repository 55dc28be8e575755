"""Ingestion: sources -> converters -> SourceDocuments (see docs/builder.md, docs/ingest.md)."""
