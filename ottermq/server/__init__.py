"""The asyncio server, the only socket code: `ottermq.server.run.serve(broker, ServeOptions(...))`.

Modules: `protocol` (one socket <-> one broker Connection), `server` (listener, ticker, graceful stop),
`run` (event loop), `signals` (stop signals), `listen` (dual-stack sockets), `log` (structured logs).
"""
