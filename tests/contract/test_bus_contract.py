"""The Bus contract (`agora.ports.bus`), run against the embedded bus and RabbitMQ.

The second half covers what only the broker backend has: an unreachable broker, a broker
that comes up after the service, a dropped connection, a pre-existing classic queue,
and amqps:// with a client certificate (through a TLS-terminating proxy in front of the
local RabbitMQ, so no broker TLS setup is needed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from yarl import URL

from agora.adapters.bus_amqp import AmqpBus, TlsFiles
from agora.adapters.bus_memory import MemoryBus
from agora.ports.bus import Bus, BusUnavailable, Delivery, PoisonMessage, PublishFailed, Topology
from tests.support.net import free_port
from tests.support.services import delete_topology
from tests.support.waiting import eventually

CONNECTED = "user.connected"
DISCONNECTED = "user.disconnected"


class Recorder:
    """A handler that records deliveries; `fail` maps a message id to the exceptions
    its successive deliveries raise."""

    def __init__(self, fail: dict[str, list[Exception]] | None = None) -> None:
        self.seen: list[Delivery] = []
        self.fail = fail or {}

    async def __call__(self, delivery: Delivery) -> None:
        self.seen.append(delivery)
        errors = self.fail.get(delivery.message_id or "")
        if errors:
            raise errors.pop(0)

    def ids(self) -> list[str | None]:
        return [d.message_id for d in self.seen]


def new_id() -> str:
    return str(uuid.uuid4())


# --- the contract, both backends ------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.embedded),
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
    ]
)
def backend(request: pytest.FixtureRequest) -> tuple[str, str, Topology]:
    """(kind, url, topology); resolved in a sync fixture so the async amqp_url can run."""
    if request.param == "memory":
        return "memory", "", Topology()
    url = request.getfixturevalue("amqp_url")
    return "amqp", url, Topology().suffixed(request.getfixturevalue("amqp_suffix"))


@pytest.fixture
async def bus(backend: tuple[str, str, Topology]) -> AsyncIterator[Bus]:
    kind, url, topology = backend
    started: Bus = MemoryBus(topology) if kind == "memory" else AmqpBus(url, topology)
    await started.start()
    yield started
    await started.close()
    if kind == "amqp":
        await delete_topology(url, topology)


async def restart(bus: Bus, handler: Recorder, prefetch: int = 100) -> None:
    await bus.close()
    await bus.start()
    await bus.consume(handler, prefetch=prefetch)


async def test_ping_answers_and_consuming_follows_the_consumer(bus: Bus) -> None:
    await bus.ping()  # readiness: raises BusUnavailable when the broker cannot be reached
    assert not bus.consuming
    await bus.consume(Recorder())
    await eventually(lambda: bus.consuming)
    await bus.close()
    assert not bus.consuming


async def test_publish_then_consume_delivers_body_key_and_id(bus: Bus) -> None:
    recorder = Recorder()
    await bus.consume(recorder)
    first, second = new_id(), new_id()
    await bus.publish(CONNECTED, b'{"event": "connected", "user_id": "1"}', message_id=first)
    await bus.publish(DISCONNECTED, b'{"event": "disconnected"}', message_id=second)

    await eventually(lambda: len(recorder.seen) == 2)
    got = {d.message_id: d for d in recorder.seen}
    assert got[first].body == b'{"event": "connected", "user_id": "1"}'
    assert got[first].routing_key == CONNECTED
    assert got[second].routing_key == DISCONNECTED
    assert not got[first].redelivered


async def test_unbound_routing_key_fails_and_is_not_delivered(bus: Bus) -> None:
    """DESIGN only publishes bound keys; an unroutable event would be silently lost by
    the broker, so publish refuses it and the outbox keeps it."""
    recorder = Recorder()
    await bus.consume(recorder)
    with pytest.raises(PublishFailed):
        await bus.publish("user.renamed", b"{}", message_id=new_id())
    bound = new_id()
    await bus.publish(CONNECTED, b"{}", message_id=bound)
    await eventually(lambda: recorder.ids() == [bound])
    await asyncio.sleep(0.2)
    assert recorder.ids() == [bound]


async def test_acked_message_is_not_redelivered_after_restart(bus: Bus) -> None:
    recorder = Recorder()
    await bus.consume(recorder)
    acked = new_id()
    await bus.publish(CONNECTED, b"{}", message_id=acked)
    await eventually(lambda: recorder.ids() == [acked])

    after_restart = Recorder()
    await restart(bus, after_restart)
    marker = new_id()
    await bus.publish(CONNECTED, b"{}", message_id=marker)
    await eventually(lambda: marker in after_restart.ids())
    await asyncio.sleep(0.2)
    assert after_restart.ids() == [marker]


async def test_poison_message_is_dead_lettered_with_reason_and_others_flow(bus: Bus) -> None:
    poison, good = new_id(), new_id()
    recorder = Recorder(fail={poison: [PoisonMessage("unknown event 'renamed'")]})
    await bus.consume(recorder)
    await bus.publish(CONNECTED, b'{"event": "renamed"}', message_id=poison)
    await bus.publish(CONNECTED, b"{}", message_id=good)

    await eventually(lambda: good in recorder.ids())

    async def dead_lettered() -> bool:
        return len(await bus.dead_letters()) == 1

    await eventually(dead_lettered)
    [dead] = await bus.dead_letters()
    assert dead.reason == "unknown event 'renamed'"
    assert dead.delivery.message_id == poison
    assert dead.delivery.body == b'{"event": "renamed"}'
    assert dead.delivery.routing_key == CONNECTED
    # Reading the dead letters leaves them there, and the poison is never retried.
    assert len(await bus.dead_letters()) == 1
    await asyncio.sleep(0.3)
    assert recorder.ids().count(poison) == 1


async def test_transient_failure_is_redelivered_then_acked(bus: Bus) -> None:
    flaky = new_id()
    recorder = Recorder(fail={flaky: [ConnectionError("database down")]})
    await bus.consume(recorder)
    await bus.publish(CONNECTED, b"{}", message_id=flaky)

    await eventually(lambda: len(recorder.seen) == 2)
    assert [d.redelivered for d in recorder.seen] == [False, True]
    assert await bus.dead_letters() == []
    # Acked the second time: a new consumer does not get it again.
    after_restart = Recorder()
    await restart(bus, after_restart)
    await asyncio.sleep(0.3)
    assert after_restart.seen == []


async def test_messages_wait_for_a_consumer(bus: Bus) -> None:
    ids = [new_id() for _ in range(5)]
    for message_id in ids:
        await bus.publish(CONNECTED, message_id.encode(), message_id=message_id)
    await asyncio.sleep(0.1)
    recorder = Recorder()
    await bus.consume(recorder)
    await eventually(lambda: len(recorder.seen) == 5)
    assert sorted(recorder.ids()) == sorted(ids)  # type: ignore[type-var]


async def test_handlers_run_concurrently_up_to_prefetch(bus: Bus) -> None:
    running, peak = 0, 0
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    await bus.consume(slow, prefetch=3)
    for _ in range(5):
        await bus.publish(CONNECTED, b"{}", message_id=new_id())
    await eventually(lambda: running == 3)
    await asyncio.sleep(0.2)
    assert peak == 3  # never more than the prefetch
    release.set()
    await eventually(lambda: running == 0 and peak == 3)


async def test_second_consumer_on_one_bus_is_refused(bus: Bus) -> None:
    await bus.consume(Recorder())
    with pytest.raises(RuntimeError):
        await bus.consume(Recorder())


# --- RabbitMQ only ----------------------------------------------------------------------


class Proxy:
    """A TCP forwarder to the local broker that tests can drop, open late, or put TLS on."""

    def __init__(self, target: URL, server_ssl: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.server_ssl = server_ssl
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def open(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, ssl=self.server_ssl
        )

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.drop_connections()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)
        except OSError:
            writer.close()
            return
        self.accepted += 1
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
def topology(amqp_url: str, amqp_suffix: str) -> Topology:
    return Topology().suffixed(amqp_suffix)


@pytest.fixture
async def cleanup(amqp_url: str, topology: Topology) -> AsyncIterator[None]:
    yield
    await delete_topology(amqp_url, topology)


def via(proxy: Proxy, amqp_url: str, scheme: str = "amqp", host: str = "127.0.0.1") -> str:
    return str(URL(amqp_url).with_scheme(scheme).with_host(host).with_port(proxy.port))


@pytest.mark.rabbitmq
async def test_unreachable_broker_fails_publish_in_bounded_time() -> None:
    bus = AmqpBus("amqp://guest:guest@127.0.0.1:1/", Topology(), publish_timeout=2.0)
    began = time.monotonic()
    await bus.start()  # does not raise: the service stays up and retries in background
    assert time.monotonic() - began < 1.0
    with pytest.raises(PublishFailed):
        await bus.publish(CONNECTED, b"{}", message_id=new_id())
    assert time.monotonic() - began < 3.0
    with pytest.raises(BusUnavailable, match="Connect call failed"):
        await bus.ping()  # says why: the last attempt's error
    await bus.close()


@pytest.mark.rabbitmq
async def test_broker_up_after_start_is_connected_in_background(
    amqp_url: str, topology: Topology, cleanup: None
) -> None:
    proxy = Proxy(URL(amqp_url))
    bus = AmqpBus(via(proxy, amqp_url), topology, publish_timeout=1.0)
    await bus.start()
    recorder = Recorder()
    await bus.consume(recorder)  # registered now, starts once connected
    with pytest.raises(PublishFailed):
        await bus.publish(CONNECTED, b"{}", message_id=new_id())

    await proxy.open()
    message_id = new_id()

    async def published() -> bool:
        try:
            await bus.publish(CONNECTED, b"{}", message_id=message_id)
        except PublishFailed:
            return False
        return True

    await eventually(published, timeout=10)
    await eventually(lambda: message_id in recorder.ids())
    await bus.close()
    await proxy.close()


@pytest.mark.rabbitmq
async def test_consumer_and_publisher_survive_a_dropped_connection(
    amqp_url: str, topology: Topology, cleanup: None
) -> None:
    proxy = Proxy(URL(amqp_url))
    await proxy.open()
    bus = AmqpBus(via(proxy, amqp_url), topology, reconnect_interval=0.3)
    await bus.start()
    recorder = Recorder()
    await bus.consume(recorder)
    before, after = new_id(), new_id()
    await bus.publish(CONNECTED, b"{}", message_id=before)
    await eventually(lambda: before in recorder.ids())

    proxy.drop_connections()
    await bus.publish(CONNECTED, b"{}", message_id=after)  # waits out the reconnection
    await eventually(lambda: after in recorder.ids())
    assert proxy.accepted == 2  # it did reconnect, once
    await bus.close()
    await proxy.close()


@pytest.mark.rabbitmq
async def test_ping_fails_while_the_broker_is_cut_off_and_answers_once_it_is_back(
    amqp_url: str, topology: Topology, cleanup: None
) -> None:
    proxy = Proxy(URL(amqp_url))
    await proxy.open()
    bus = AmqpBus(via(proxy, amqp_url), topology, reconnect_interval=0.3)
    await bus.start()
    await bus.ping()

    await proxy.close()  # connections dropped, and no new one accepted

    async def ping_fails() -> bool:
        try:
            await asyncio.wait_for(bus.ping(), 1.0)
        except (BusUnavailable, TimeoutError):
            return True
        return False

    await eventually(ping_fails, timeout=5)
    await proxy.open()

    async def ping_answers() -> bool:
        return not await ping_fails()

    await eventually(ping_answers, timeout=10)
    await bus.close()
    await proxy.close()


@pytest.mark.rabbitmq
async def test_queue_is_quorum(amqp_url: str, topology: Topology, cleanup: None) -> None:
    bus = AmqpBus(amqp_url, topology)
    await bus.start()
    await bus.close()
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        classic = {"x-dead-letter-exchange": topology.dead_letter_exchange}
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="quorum"):
            await channel.queue_declare(topology.queue, durable=True, arguments=classic)
    finally:
        await connection.close()


@pytest.mark.rabbitmq
async def test_existing_classic_queue_is_kept(
    amqp_url: str, topology: Topology, cleanup: None
) -> None:
    """A broker (or an older deployment) that has the queue as classic still works."""
    connection = await aiormq.connect(amqp_url)
    channel = await connection.channel()
    await channel.queue_declare(
        topology.queue,
        durable=True,
        arguments={"x-dead-letter-exchange": topology.dead_letter_exchange},
    )
    await connection.close()

    bus = AmqpBus(amqp_url, topology)
    await bus.start()
    recorder = Recorder(fail={"poison": [PoisonMessage("bad json")]})
    await bus.consume(recorder)
    await bus.publish(CONNECTED, b"{}", message_id="poison")
    await bus.publish(CONNECTED, b"{}", message_id="fine")
    await eventually(lambda: "fine" in recorder.ids())

    async def dead_lettered() -> bool:
        return [d.reason for d in await bus.dead_letters()] == ["bad json"]

    await eventually(dead_lettered)
    await bus.close()


def test_tls_files_with_a_plain_url_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="amqps"):
        AmqpBus("amqp://guest:guest@127.0.0.1/", tls=TlsFiles(ca_file=tmp_path / "ca.pem"))


async def test_unreadable_tls_files_fail_at_start(tmp_path: Path) -> None:
    """A configuration error, unlike a broker outage: start raises instead of retrying."""
    bus = AmqpBus("amqps://guest:guest@127.0.0.1:1/", tls=TlsFiles(ca_file=tmp_path / "no.pem"))
    with pytest.raises(FileNotFoundError):
        await bus.start()
    await bus.close()


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def certificate(
        name: str, key: Any, issuer: x509.Name, signer: Any, ca: bool, san: bool = False
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agora test CA")])
    ca = certificate("agora test CA", ca_key, ca_name, ca_key, ca=True)
    files = {"ca": write("ca.pem", ca.public_bytes(pem))}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(role, key, ca_name, ca_key, ca=False, san=role == "server")
        files[role] = write(f"{role}.pem", cert.public_bytes(pem))
        files[f"{role}_key"] = write(f"{role}.key", key_pem(key))
    return files


@pytest.mark.rabbitmq
async def test_amqps_with_ca_and_client_certificate(
    amqp_url: str, topology: Topology, cleanup: None, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    server_ssl.load_cert_chain(pki["server"], pki["server_key"])
    server_ssl.verify_mode = ssl.CERT_REQUIRED  # the proxy insists on a client certificate
    proxy = Proxy(URL(amqp_url), server_ssl)
    await proxy.open()
    url = via(proxy, amqp_url, scheme="amqps", host="localhost")

    without_client_cert = AmqpBus(
        url, topology, tls=TlsFiles(ca_file=pki["ca"]), publish_timeout=1.0
    )
    await without_client_cert.start()  # refused by the proxy: retries in background
    with pytest.raises(PublishFailed):
        await without_client_cert.publish(CONNECTED, b"{}", message_id=new_id())
    await without_client_cert.close()

    bus = AmqpBus(url, topology, tls=TlsFiles(pki["ca"], pki["client"], pki["client_key"]))
    await bus.start()
    recorder = Recorder()
    await bus.consume(recorder)
    message_id = new_id()
    await bus.publish(CONNECTED, b"{}", message_id=message_id)
    await eventually(lambda: recorder.ids() == [message_id])
    await bus.close()
    await proxy.close()
