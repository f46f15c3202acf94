"""Real-time sockets, protocol-agnostic: the pieces the social socket (and messaging's) share.

- `tickets`: one-time connect tickets (issue; verify and redeem once across instances).
- `limits`: a counter-with-growing-blocks rate limiter over the Cache port.
- `connection`: one socket's bounded outbound queue and the writer task that empties it.
- `channels`: one pub/sub handler per process, routing channels by prefix.
- `hub`: the local devices of each user and fan-out to them from any instance.
- `presence`: join/leave per user, refresh of device entries, watching other users.
- `sessions`: session-ended notices (logout, disconnect) that close sockets.
- `endpoint`: the socket lifecycle (limits, ticket, welcome, read loop, cleanup);
  a service subclasses it with its own frames (`services/social/socket.py`).
- `kit`: builds those pieces for one service, gives its endpoint their arguments, and
  starts and stops them (and the service's own) in one order.
"""
