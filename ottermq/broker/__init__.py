"""The synchronous broker: per-connection protocol handling and the domain model (vhosts, queues...).

Import from the modules themselves (`ottermq.broker.broker.Broker`, `...connection.Connection`); this
package file stays empty so that importing one domain module never drags in the whole broker.
"""
