"""The Avro event contracts on the wire: the Confluent wire format codec and the schema
registries (embedded from ``schemas/``, or a Confluent-compatible one over HTTP)."""
