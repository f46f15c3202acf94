"""What more than one test package needs, written once. Fixtures stay in conftest.py;
everything a test imports lives here (or beside the one package that uses it).

- settings: TEST_SECRET and `make_settings` (cheap hashing, no gRPC port)
- services: the local PostgreSQL, Redis and RabbitMQ (where, reachable?, clean-up)
- databases: an empty PostgreSQL database of a test's own
- users: PASSWORD, `unique_login`, `register_and_login`
- net: `free_port`; waiting: `eventually`
- http_server: a real uvicorn server in the test's loop; grpc_servers: real gRPC servers
- media_service: a media service for `HttpMediaStore`; messaging_client: a socket client
- browser: node scripts of tests/js/ driving Debian's Chromium (playwright-core)
"""
