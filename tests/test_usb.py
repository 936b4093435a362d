"""The USB transport over pyusb, against the simulated handpieces as a pyusb backend: descriptors,
device URLs, claiming, stalls, timeouts, short packets, unplug and replug, `laserctl devices`,
and `laserctl identify --device usb:` in its own process."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import usb.backend.libusb1
import usb.control
import usb.core
import usb.util
from click.testing import CliRunner

from drivers.host import (
    ConnectionCrashed,
    HandpieceConnection,
    LinkDown,
    Reconnected,
    TransportLost,
)
from drivers.protocol import (
    Ack,
    Arm,
    DeviceState,
    FrameDecoder,
    GetStatus,
    Hello,
    SimControl,
    Status,
    encode_frame,
)
from drivers.protocol.framing import Frame
from drivers.sim import usb_backend
from drivers.sim.usb_backend import SimulatedUsbBus, SimulatedUsbHandpiece
from drivers.transport import Transport, TransportError, open_transport
from drivers.transport.usb_link import (
    KNOWN_HANDPIECES,
    UsbSelector,
    UsbTransport,
    list_handpieces,
    select_backend,
)
from laserctl.cli import main

from .scenarios import LASERCTL, Recorder, make_ready, poll, replay, status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedUsbBus]:
    """A fresh default bus (one handpiece of each type) that usb: URLs use."""
    monkeypatch.setenv("LASERCTL_USB_BACKEND", "sim")
    usb_backend.install_bus(None)
    yield usb_backend.current_bus()
    usb_backend.install_bus(None)


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimulatedUsbBus]]:
    """Put these simulated handpieces on the bus usb: URLs use (shut down afterwards)."""
    monkeypatch.setenv("LASERCTL_USB_BACKEND", "sim")

    def put(*devices: SimulatedUsbHandpiece) -> SimulatedUsbBus:
        made = SimulatedUsbBus(devices)
        usb_backend.install_bus(made)
        return made

    yield put
    usb_backend.install_bus(None)


@pytest.fixture
def twins(install: Callable[..., SimulatedUsbBus]) -> SimulatedUsbBus:
    """Two handpieces of the same type: only the serial tells them apart."""
    return install(
        SimulatedUsbHandpiece("fractional-1550", serial="FX-TWIN-A"),
        SimulatedUsbHandpiece("fractional-1550", serial="FX-TWIN-B"),
    )


def host_frames(device: SimulatedUsbHandpiece) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.feed(bytes(device.host_bytes))
    return [item for item in iter(decoder.next, None) if isinstance(item, Frame)]


# ---- the backend, through pyusb's own code ------------------------------------------------------
def test_pyusb_enumerates_the_simulated_handpieces_with_their_descriptors(
    bus: SimulatedUsbBus,
) -> None:
    found = list(usb.core.find(find_all=True, backend=usb_backend.get_backend()))
    assert [(d.idVendor, d.idProduct) for d in found] == [(0xFFFE, 0x1550), (0xFFFE, 0x1064)]
    for device, sim in zip(found, bus.devices, strict=True):
        assert device.serial_number == sim.sim.serial  # the string is the firmware's serial
        assert device.manufacturer == "laserctl simulator"
        assert device.product == f"Simulated {sim.sim.model.type.slug} handpiece"
        assert (device.bus, device.address, device.port_numbers) == (1, sim.address, (sim.port,))
        configs = list(device)  # ends: a missing alternate setting raises, as libusb's does
        assert len(configs) == 1 and len(list(configs[0])) == 1
        interface = configs[0][(0, 0)]
        signature = (
            interface.bInterfaceClass,
            interface.bInterfaceSubClass,
            interface.bInterfaceProtocol,
        )
        assert signature == (0xFF, 0x4C, 0x01)
        kinds = [(e.bEndpointAddress, usb.util.endpoint_type(e.bmAttributes)) for e in interface]
        assert kinds == [
            (sim.endpoints[0].bEndpointAddress, usb.util.ENDPOINT_TYPE_INTR),
            (sim.out_ep, usb.util.ENDPOINT_TYPE_BULK),
            (sim.in_ep, usb.util.ENDPOINT_TYPE_BULK),
        ]
        usb.util.dispose_resources(device)
    assert bus.devices[0].in_ep != bus.devices[1].in_ep  # addresses come from descriptors
    assert {(d.vendor_id, d.product_id) for d in bus.devices} <= set(KNOWN_HANDPIECES)


def test_descriptor_bytes_over_control_transfers_match_the_fields(bus: SimulatedUsbBus) -> None:
    device = usb.core.find(backend=usb_backend.get_backend(), idProduct=0x1064)
    raw = usb.control.get_descriptor(device, 18, usb.util.DESC_TYPE_DEVICE, 0)
    assert raw.tobytes() == bus.devices[1].device_descriptor(device.address).pack()
    assert (raw[0], raw[1]) == (18, usb.util.DESC_TYPE_DEVICE)
    assert int.from_bytes(raw[8:10], "little") == 0xFFFE
    config = usb.control.get_descriptor(device, 255, usb.util.DESC_TYPE_CONFIG, 0)
    assert len(config) == int.from_bytes(config[2:4], "little") == 9 + 9 + 3 * 7
    with pytest.raises(usb.core.USBError) as stalled:  # no such string: endpoint 0 stalls
        usb.control.get_descriptor(device, 255, usb.util.DESC_TYPE_STRING, 9, 0x0409)
    assert stalled.value.errno == errno.EPIPE
    usb.util.dispose_resources(device)


# ---- device URLs --------------------------------------------------------------------------------
def test_usb_urls_parse() -> None:
    assert UsbSelector.parse("") == UsbSelector()
    assert UsbSelector.parse("fffe:1550") == UsbSelector(0xFFFE, 0x1550, None)
    assert UsbSelector.parse("FFFE:1064:ND-1:x") == UsbSelector(0xFFFE, 0x1064, "ND-1:x")
    assert str(UsbSelector(0xFFFE, 0x1064, "ND-00001")) == "usb:fffe:1064:ND-00001"
    for bad in ("fffe", "zz:1550", "fffe:10000", "fffe:"):
        with pytest.raises(TransportError, match=f"usb:{bad}: expected"):
            UsbSelector.parse(bad)


def test_bare_usb_takes_the_first_handpiece_and_ids_pick_one(bus: SimulatedUsbBus) -> None:
    for url, serial in (("usb:", "FX-00001"), ("usb", "FX-00001"), ("usb:fffe:1064", "ND-00001")):
        with HandpieceConnection(url, reconnect=False) as connection:
            assert connection.info is not None and connection.info.serial == serial
    with pytest.raises(TransportError, match=r"usb:fffe:1064:NOPE: no such USB handpiece"):
        open_transport("usb:fffe:1064:NOPE")


def test_several_alike_need_the_serial(twins: SimulatedUsbBus) -> None:
    with pytest.raises(TransportError, match=r"2 handpieces attached .*FX-TWIN-A.*FX-TWIN-B"):
        open_transport("usb:fffe:1550")
    with HandpieceConnection("usb:fffe:1550:FX-TWIN-B", reconnect=False) as connection:
        assert connection.info is not None and connection.info.serial == "FX-TWIN-B"
        assert twins.devices[1].kernel_driver_detaches == 1
        assert twins.devices[0].kernel_driver_detaches == 0  # the other one was left alone


def test_backend_choice(bus: SimulatedUsbBus, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = select_backend()  # the bus fixture set LASERCTL_USB_BACKEND=sim
    assert (chosen.name, chosen.backend) == ("sim", bus.backend)
    monkeypatch.setenv("LASERCTL_USB_BACKEND", "openusb")
    with pytest.raises(TransportError, match="expected 'sim' or 'libusb1'"):
        select_backend()
    monkeypatch.delenv("LASERCTL_USB_BACKEND")
    monkeypatch.setattr(usb.backend.libusb1, "get_backend", lambda *a, **k: None)
    with pytest.raises(TransportError, match=r"libusb-1\.0-0"):
        open_transport("usb:")


# ---- opening and closing ------------------------------------------------------------------------
def test_open_detaches_the_kernel_driver_claims_and_close_gives_it_back(
    bus: SimulatedUsbBus,
) -> None:
    device = bus.devices[0]
    assert device.kernel_driver_bound
    transport = open_transport("usb:")
    try:
        assert isinstance(transport, UsbTransport)
        assert transport.device_url == "usb:fffe:1550:FX-00001"
        assert not device.kernel_driver_bound and device.kernel_driver_detaches == 1
        with pytest.raises(TransportError, match="another program holds the handpiece"):
            open_transport("usb:fffe:1550")
    finally:
        transport.close()
    assert device.kernel_driver_bound
    second = open_transport("usb:fffe:1550")  # released: free to claim again
    second.close()


def test_close_under_a_reading_thread_leaves_the_handpiece_free(bus: SimulatedUsbBus) -> None:
    """close() from one thread while another reads: the reader gets TransportError only, and
    nothing keeps the interface claimed (the next open would say EBUSY)."""
    outcomes: list[str] = []
    for i in range(30):
        transport = open_transport("usb:")

        def reader(transport: Transport = transport) -> None:
            try:
                while True:
                    transport.read(0.005)
            except TransportError:
                outcomes.append("TransportError")
            except Exception as exc:  # the test's point: nothing else may come out
                outcomes.append(type(exc).__name__)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.001 * (i % 5))
        transport.close()
        thread.join(timeout=2.0)
        assert not thread.is_alive()
    assert outcomes == ["TransportError"] * 30
    open_transport("usb:").close()
    assert bus.devices[0].kernel_driver_bound


def test_close_landing_as_a_read_starts_does_not_leave_the_interface_claimed(
    install: Callable[..., SimulatedUsbBus],
) -> None:
    """The worst moment for close(): after read() began, before pyusb touched the device.
    pyusb claims on demand, so a read going ahead on a released device would claim it again
    for nobody, and the next open would find it busy."""
    install(SimulatedUsbHandpiece("fractional-1550", kernel_driver=False))
    transport = open_transport("usb:")
    assert isinstance(transport, UsbTransport)
    endpoint = transport._ep_in

    class CloseFirst:
        def read(self, size: int, timeout: int) -> object:
            transport.close()  # from "another thread", right now
            return endpoint.read(size, timeout)

    transport._ep_in = CloseFirst()
    transport.read(0.01)
    with pytest.raises(TransportError, match="closed"):
        transport.read(0.01)
    open_transport("usb:").close()  # EBUSY here if anything still held the interface


def test_read_timeout_is_no_bytes_within_the_timeout(bus: SimulatedUsbBus) -> None:
    transport = open_transport("usb:")
    try:
        start = time.monotonic()
        assert transport.read(0.05) == b""
        assert 0.04 <= time.monotonic() - start < 0.5
    finally:
        transport.close()


def test_short_and_zero_length_packets_reassemble(bus: SimulatedUsbBus) -> None:
    device = bus.devices[0]
    transport = open_transport("usb:")
    try:
        device.short_packets(3, 0)  # zero-length packets first: no bytes, no error
        transport.write(encode_frame(Hello.TYPE, 1, Hello(1, 1).pack()))
        assert [transport.read(0.2) for _ in range(3)] == [b"", b"", b""]
        device.short_packets(1000, 3)
        pieces: list[bytes] = []
        decoder = FrameDecoder()
        poll(lambda: _feed(decoder, pieces, transport.read(0.05)), 2.0, "HELLO_INFO in pieces")
        assert pieces and max(len(p) for p in pieces) <= 3
    finally:
        transport.close()


def _feed(decoder: FrameDecoder, pieces: list[bytes], data: bytes) -> bool:
    if data:
        pieces.append(data)
        decoder.feed(data)
    item = decoder.next()
    return isinstance(item, Frame) and item.type == 0x82  # HELLO_INFO


# ---- faults under a live connection -------------------------------------------------------------
@pytest.mark.parametrize("direction", ["in", "out"])
def test_stalled_endpoint_is_cleared_and_the_link_goes_on(
    bus: SimulatedUsbBus, direction: str
) -> None:
    device = bus.devices[0]
    recorder = Recorder()
    with HandpieceConnection("usb:", on_event=recorder, reconnect=False) as connection:
        assert isinstance(connection.call(GetStatus()), Status)
        device.stall(direction)
        assert isinstance(connection.call(GetStatus()), Status)
        assert device.halts_cleared == 1
        assert not any(isinstance(n, TransportLost) for n in recorder.items)
        assert connection.stats.connects == 1


def test_short_nak_spell_is_ridden_out_and_a_long_one_is_a_lost_link(
    bus: SimulatedUsbBus,
) -> None:
    device = bus.devices[0]
    recorder = Recorder()
    connection = HandpieceConnection("usb:", on_event=recorder, reconnect=True)
    connection.open()
    try:
        device.timeout(0.1, "both")  # shorter than the write timeout and the link timeout
        assert isinstance(connection.call(GetStatus()), Status)
        assert not any(isinstance(n, TransportLost) for n in recorder.items)
        # Takes no data for four write timeouts (0.25 s): the link is lost, and the first
        # reconnects fail in the middle of their HELLO, until the device takes data again.
        device.timeout(1.0, "out")
        lost = recorder.wait_for(lambda n: isinstance(n, TransportLost), 2.0, "TransportLost")
        assert isinstance(lost, TransportLost) and "took no data" in lost.error
        recorder.wait_for(lambda n: isinstance(n, Reconnected), 4.0, "Reconnected")
        assert isinstance(connection.call(GetStatus()), Status)
        assert not any(isinstance(n, ConnectionCrashed) for n in recorder.items)
    finally:
        connection.close()


@pytest.mark.req("SR-09")
@pytest.mark.req("SR-15")
def test_unplug_mid_burst_stops_emission_and_replug_identifies_first(
    bus: SimulatedUsbBus,
) -> None:
    """Unplugged while firing: the host hears ENODEV at once and fails what is pending; the
    handpiece's own watchdog stops emission; after the replug (a new address) the host says
    HELLO before anything else and the shots fired are all read back."""
    device = bus.devices[0]
    recorder = Recorder()
    connection = HandpieceConnection("usb:", on_event=recorder, reconnect=True)
    first = connection.open()
    try:
        make_ready(connection)
        assert connection.call(Arm(1000, 0)) == Ack(Arm.TYPE)
        assert connection.call(SimControl("press")) == Ack(SimControl.TYPE)
        recorder.wait_for_shots(2)
        old_address = device.address
        device.unplug()
        lost = recorder.wait_for(lambda n: isinstance(n, TransportLost), 0.5, "TransportLost")
        assert isinstance(lost, TransportLost) and "unplugged" in lost.error
        with pytest.raises(LinkDown):
            connection.call(GetStatus(), timeout=0.2)
        # Nothing but its watchdog can disarm it now: the footswitch stays down.
        poll(lambda: device.status().state == DeviceState.IDLE, 0.5, "the device disarmed")
        assert (device.status().emission, device.status().footswitch) == (0, 1)
        device.replug()
        again = recorder.wait_for(lambda n: isinstance(n, Reconnected), 3.0, "Reconnected")
        assert isinstance(again, Reconnected) and device.address != old_address
        assert again.info.same_handpiece(first) and again.info.boot_id == first.boot_id
        assert host_frames(device)[0].type == Hello.TYPE  # identified before anything else
        body = status(connection)
        assert body.footswitch == 1 and body.state == DeviceState.IDLE
        fired = replay(connection, recorder)
        assert [s.shot_no for s in fired] == list(range(1, body.shot_no + 1))
        streamed = recorder.shots()
        assert [s.shot_no for s in streamed] == [s.shot_no for s in fired[: len(streamed)]]
    finally:
        connection.close()


@pytest.mark.req("SR-15")
def test_replug_after_a_power_cycle_shows_a_new_boot(bus: SimulatedUsbBus) -> None:
    device = bus.devices[0]
    recorder = Recorder()
    connection = HandpieceConnection("usb:", on_event=recorder, reconnect=True)
    first = connection.open()
    try:
        device.unplug()
        recorder.wait_for(lambda n: isinstance(n, TransportLost), 1.0, "TransportLost")
        device.replug(power_cycle=True)
        again = recorder.wait_for(lambda n: isinstance(n, Reconnected), 3.0, "Reconnected")
        assert isinstance(again, Reconnected)
        assert again.info.same_handpiece(first) and again.info.boot_id != first.boot_id
    finally:
        connection.close()


def test_bare_usb_reconnects_to_the_same_handpiece(bus: SimulatedUsbBus) -> None:
    """usb: means the first handpiece found at connect; with it unplugged the other one is
    first, but the reconnect waits for the one it had."""
    device = bus.devices[0]
    recorder = Recorder()
    connection = HandpieceConnection("usb:", on_event=recorder, reconnect=True)
    connection.open()
    try:
        device.unplug()
        recorder.wait_for(lambda n: isinstance(n, TransportLost), 1.0, "TransportLost")
        time.sleep(0.2)  # reconnect attempts meanwhile find only the ndyag-1064
        assert not any(isinstance(n, Reconnected) for n in recorder.items)
        device.replug()
        again = recorder.wait_for(lambda n: isinstance(n, Reconnected), 3.0, "Reconnected")
        assert isinstance(again, Reconnected) and again.info.serial == "FX-00001"
    finally:
        connection.close()


# ---- the command line ---------------------------------------------------------------------------
def test_devices_lists_usb_handpieces_with_working_urls(bus: SimulatedUsbBus) -> None:
    result = CliRunner().invoke(main, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["usb"]["backend"] == "sim" and data["usb"]["error"] is None
    urls = [hp["url"] for hp in data["usb"]["handpieces"]]
    assert urls == ["usb:fffe:1550:FX-00001", "usb:fffe:1064:ND-00001"]
    assert isinstance(data["serial_ports"], list)
    for url, found in zip(urls, list_handpieces(), strict=True):
        with HandpieceConnection(url, reconnect=False) as connection:
            assert connection.info is not None and connection.info.serial == found.serial
    text = CliRunner().invoke(main, ["devices"])
    assert text.exit_code == 0 and "usb:fffe:1064:ND-00001" in text.output
    assert "LASERCTL_USB_BACKEND=sim" in text.output  # says which backend it used


def test_devices_without_libusb_still_lists_serial_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LASERCTL_USB_BACKEND", raising=False)
    monkeypatch.setattr(usb.backend.libusb1, "get_backend", lambda *a, **k: None)
    result = CliRunner().invoke(main, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "libusb-1.0-0" in data["usb"]["error"] and data["usb"]["handpieces"] == []


def test_identify_usb_in_its_own_process() -> None:
    env = dict(os.environ, LASERCTL_USB_BACKEND="sim")
    result = subprocess.run(
        [*LASERCTL, "identify", "--device", "usb:", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["handpiece"], data["serial"], data["simulated"]) == (
        "fractional-1550",
        "FX-00001",
        True,
    )
