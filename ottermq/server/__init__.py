"""The asyncio server, the only socket code: `ottermq.server.run.serve(broker, ServeOptions(...))`.

Modules: `protocol` (one socket <-> one broker Connection), `server` (listener, ticker, graceful stop),
`run` (event loop and signals), `log` (structured log formatting).
"""
