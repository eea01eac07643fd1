"""The two processing stages as plain code over a key-value state store. No Faust, no I/O.

A stage takes a batch of source records and returns a :class:`BatchOutput`: state writes
(changelog records), messages to send, ClickHouse rows and metric counts. ``streams.runtime.runner``
runs the output through Faust and the sink; tests run it against a dict.

- :class:`ProfileStage` (keyed by customer or anonymous id; reads the input topics, the repartition
  topic and the credits topic): decode and validate, dead-letter what fails, fold accepted
  events into profiles, buckets and per-minute totals, and send shares and touches to the
  referral index.
- The pipeline owns the partitioning of its state: a customer's state lives on partition
  ``partition_for(customer_id)`` (murmur2, as the Java client and kafka-python partition keys),
  whatever partitioner the upstream producer used (librdkafka's CRC32 default, random,
  explicit). An input record that arrived on another partition is re-routed, unprocessed, to
  the repartition topic on its key's partition, carrying its origin (topic, partition,
  offset); it is processed there in the *lane* of its origin partition (``streams.core.replay``),
  exact by origin offsets like any input. Watermarks tell each partition how far every other
  partition has re-routed (by ingest time), so per-minute totals are final only once no lane
  can still bring an on-time event.
- :class:`ReferralStage` (keyed by share id; reads the referral index): the stream-table join
  that turns touches into credits for the sharer.
- Identity (docs/definitions.md): an anonymous id's state lives on its own key's partition,
  apart from customers' (``state_key``), with the events it had before its identify; an
  identify links it there, and from then on those events and every later one are forwarded
  through the repartition topic to the customer's partition, which folds each once
  (``streams.core.identity``). Credits of anonymous touches pass through the toucher's
  partition, which names the person.
- Erasure (``streams.stages.erasure_steps``): a request on the erasures topic is handled on the
  partition of the id it names, which deletes its state, leaves a suppression record, and
  tells the other partitions and the share index to drop what they keep of it; every input
  naming an erased id is dropped first.
"""
