"""Timeline layer: the schema, the Parquet case store, the custody log and the error hierarchy."""
