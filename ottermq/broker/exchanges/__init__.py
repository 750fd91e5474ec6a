"""The built-in exchange types, one per module; `ottermq.broker.exchange_types` registers them."""
