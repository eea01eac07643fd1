"""Customer interaction pipeline: Kafka events to exact per-customer profiles in ClickHouse."""
