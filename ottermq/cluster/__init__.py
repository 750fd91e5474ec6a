"""Cluster membership and leader election through etcd v3."""
