"""Images on disk: reading and writing every supported format with its metadata, atomically."""
