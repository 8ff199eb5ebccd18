"""`slsg-edge run`: judge frames from a camera, stream, video or folder with a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from edge_runtime.errors import SlsgError
from edge_runtime.pipeline import InferenceFailed, InvalidOutputAlarm
from edge_runtime.runner import RunConfig, execute
from edge_runtime.sinks.eventlog import LogPolicy
from edge_runtime.sinks.evidence import EvidencePolicy
from edge_runtime.sinks.modbus import ModbusConfig, parse_modbus_target
from edge_runtime.sinks.mqtt import MqttConfig
from edge_runtime.sinks.opcua import OpcUaConfig
from edge_runtime.sources.cameras import CameraSettings
from edge_runtime.sources.genicam import GenICamSettings
from edge_runtime.sources.live import ReconnectPolicy
from edge_runtime.sources.spec import SourceSpec
from edge_runtime.trigger.frames import TriggerConfig
from edge_runtime.watchdog import WatchdogConfig
from edge_runtime.web.server import WebConfig

#: Exit statuses (documented in docs/edge_runtime.md; systemd units use RestartPreventExitStatus=3).
EXIT_LOST, EXIT_SETUP, EXIT_ALARM = 1, 2, 3

#: `--help` groups the options by what they are about
SOURCE, CAMERA, MODEL, DECISION = "Source", "Camera settings", "Model and backend", "Decision"
OUTPUTS, EVIDENCE, HEALTH = "Line outputs", "Event log and NG images", "Health and display"
PAGE = "Line-side page"


def command(
    bundle: Path = typer.Option(
        ..., "--bundle", "-b", help="The model.slsg/ folder made by `slsg export`.", rich_help_panel=MODEL
    ),
    camera: Optional[int] = typer.Option(
        None, "--camera", help="V4L2/USB camera index (e.g. 0).", rich_help_panel=SOURCE
    ),
    csi: Optional[int] = typer.Option(
        None, "--csi", help="Jetson CSI camera sensor id (GStreamer).", rich_help_panel=SOURCE
    ),
    rtsp: Optional[str] = typer.Option(None, "--rtsp", help="RTSP stream URL (read over TCP).", rich_help_panel=SOURCE),
    genicam: Optional[str] = typer.Option(
        None, "--genicam", help="A GigE Vision / USB3 Vision camera (Aravis): its device ID or IP address; "
        "`first` for the first one found.", rich_help_panel=SOURCE
    ),
    video: Optional[Path] = typer.Option(None, "--video", help="A video file.", rich_help_panel=SOURCE),
    images: Optional[Path] = typer.Option(
        None, "--images", help="A folder of images, read in name order.", rich_help_panel=SOURCE
    ),
    trigger: Optional[str] = typer.Option(
        None, "--trigger", help="One frame per part, asked for by a trigger: `stdin` (one part ID per line; an empty "
        "line: the next sequence number). Without it every frame is judged.", rich_help_panel=SOURCE
    ),
    deadline_ms: float = typer.Option(
        1000.0, "--deadline-ms", min=1.0, help="With --trigger: a part whose answer is not out this long after its "
        "trigger is NO-DECISION.", rich_help_panel=SOURCE
    ),
    width: Optional[int] = typer.Option(
        None, "--width", help="Camera frame width (V4L2, CSI).", rich_help_panel=CAMERA
    ),
    height: Optional[int] = typer.Option(
        None, "--height", help="Camera frame height (V4L2, CSI).", rich_help_panel=CAMERA
    ),
    fps: Optional[float] = typer.Option(
        None, "--fps", help="Camera frame rate; also the watchdog's period.", rich_help_panel=CAMERA
    ),
    fourcc: Optional[str] = typer.Option(
        None, "--fourcc", help="V4L2 pixel format, e.g. MJPG or YUYV.", rich_help_panel=CAMERA
    ),
    exposure_us: Optional[int] = typer.Option(
        None, "--exposure-us", help="CSI, GenICam: fixed exposure time in µs (locks auto-exposure).",
        rich_help_panel=CAMERA
    ),
    gain: Optional[float] = typer.Option(
        None, "--gain", help="CSI, GenICam: fixed analogue gain.", rich_help_panel=CAMERA
    ),
    ae_lock: bool = typer.Option(
        False, "--ae-lock", help="CSI: lock auto-exposure once it settles.", rich_help_panel=CAMERA
    ),
    awb_lock: bool = typer.Option(
        False, "--awb-lock", help="CSI: lock auto white balance once it settles.", rich_help_panel=CAMERA
    ),
    genicam_trigger: str = typer.Option(
        "off", "--genicam-trigger", help="GenICam trigger mode: off (free-running), software (one frame per read), "
        "line0…line3 (the camera's hardware trigger input: each frame is a part).", rich_help_panel=CAMERA
    ),
    pixel_format: Optional[str] = typer.Option(
        None, "--pixel-format", help="GenICam pixel format: Mono8, BayerRG8, BayerBG8, BayerGR8, BayerGB8, RGB8, BGR8.",
        rich_help_panel=CAMERA
    ),
    rtsp_latency_ms: int = typer.Option(
        100, "--rtsp-latency-ms", help="RTSP jitter buffer (GStreamer).", rich_help_panel=CAMERA
    ),
    log: Path = typer.Option(
        Path("events.jsonl"),
        "--log",
        help="JSONL event log (appended, rotated by size): one line per frame.",
        rich_help_panel=EVIDENCE,
    ),
    log_max_mb: float = typer.Option(
        100.0, "--log-max-mb", help="Rotate the log beyond this size (0: never).", rich_help_panel=EVIDENCE
    ),
    log_keep: int = typer.Option(
        10, "--log-keep", help="Rotated logs kept (events.jsonl.1 … .N).", rich_help_panel=EVIDENCE
    ),
    save_ng: Optional[Path] = typer.Option(
        None,
        "--save-ng",
        help="Save NG frames and heatmap overlays here (in the background).",
        rich_help_panel=EVIDENCE,
    ),
    quota_mb: float = typer.Option(
        1024.0, "--quota-mb", help="Disk quota for --save-ng; oldest out first.", rich_help_panel=EVIDENCE
    ),
    min_free_mb: float = typer.Option(
        512.0, "--min-free-mb", help="--save-ng: skip saving below this free space.", rich_help_panel=EVIDENCE
    ),
    burst_keep: int = typer.Option(
        10, "--burst-keep", help="--save-ng: first N frames of each NG burst (0: all).", rich_help_panel=EVIDENCE
    ),
    sensitivity: float = typer.Option(
        1.0, "--sensitivity", help=">1 flags more, <1 flags fewer.", rich_help_panel=DECISION
    ),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto | onnx | onnx-int8 | onnx-fp16 | openvino | openvino-bf16 | openvino-int8 "
        "| trt-fp16 | trt-int8 (auto: a TensorRT engine built here, else the fastest CPU backend, measured once)",
        rich_help_panel=MODEL,
    ),
    reprobe: bool = typer.Option(
        False, "--reprobe", help="auto: measure the CPU backends again (ignore the cache).", rich_help_panel=MODEL
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads of the backend (ORT / OpenVINO).", rich_help_panel=MODEL
    ),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", help="Stop after this many frames.", rich_help_panel=HEALTH
    ),
    max_invalid: int = typer.Option(
        10,
        "--max-invalid",
        help="Alarm and stop after this many invalid (non-finite) outputs in a row (0: never).",
        rich_help_panel=HEALTH,
    ),
    watchdog_periods: float = typer.Option(
        10.0,
        "--watchdog-periods",
        help="Stalled after this many frame periods without a frame.",
        rich_help_panel=HEALTH,
    ),
    webhook: Optional[str] = typer.Option(
        None,
        "--webhook",
        help="POST each NG record, source event and status change as JSON here.",
        rich_help_panel=OUTPUTS,
    ),
    mqtt: Optional[str] = typer.Option(
        None,
        "--mqtt",
        help="Broker URL mqtt://host:1883/topic (mqtts:// for TLS, user@host for a login): verdicts, status, "
        "heartbeat, events.",
        rich_help_panel=OUTPUTS,
    ),
    mqtt_ca: Optional[Path] = typer.Option(
        None, "--mqtt-ca", help="TLS: the broker's CA certificate.", rich_help_panel=OUTPUTS
    ),
    mqtt_cert: Optional[Path] = typer.Option(
        None, "--mqtt-cert", help="TLS: client certificate.", rich_help_panel=OUTPUTS
    ),
    mqtt_key: Optional[Path] = typer.Option(None, "--mqtt-key", help="TLS: client key.", rich_help_panel=OUTPUTS),
    mqtt_password_file: Optional[Path] = typer.Option(
        None,
        "--mqtt-password-file",
        help="File holding the MQTT password (else $SLSG_MQTT_PASSWORD).",
        rich_help_panel=OUTPUTS,
    ),
    mqtt_heartbeat_s: float = typer.Option(
        5.0, "--mqtt-heartbeat-s", help="Heartbeat interval.", rich_help_panel=OUTPUTS
    ),
    modbus: Optional[str] = typer.Option(
        None,
        "--modbus",
        help="HOST[:PORT] of the PLC (Modbus TCP): ready coil, NG pulse, score register.",
        rich_help_panel=OUTPUTS,
    ),
    modbus_unit: int = typer.Option(1, "--modbus-unit", help="Modbus unit (slave) id.", rich_help_panel=OUTPUTS),
    modbus_coil_base: int = typer.Option(
        0, "--modbus-coil-base", help="Address of the READY coil.", rich_help_panel=OUTPUTS
    ),
    modbus_register_base: int = typer.Option(
        0, "--modbus-register-base", help="Address of the score register.", rich_help_panel=OUTPUTS
    ),
    modbus_pulse_ms: float = typer.Option(
        200.0, "--modbus-pulse-ms", help="NG coil pulse length.", rich_help_panel=OUTPUTS
    ),
    opcua: Optional[str] = typer.Option(
        None,
        "--opcua",
        help="Serve the inspection over OPC UA at opc.tcp://HOST:PORT (Ready, Status, LastPart, counters, Threshold).",
        rich_help_panel=OUTPUTS,
    ),
    opcua_cert: Optional[Path] = typer.Option(
        None, "--opcua-cert", help="The server's certificate: Basic256Sha256, sign & encrypt.", rich_help_panel=OUTPUTS
    ),
    opcua_key: Optional[Path] = typer.Option(
        None, "--opcua-key", help="The server's private key.", rich_help_panel=OUTPUTS
    ),
    opcua_trust: Optional[Path] = typer.Option(
        None, "--opcua-trust", help="Folder of the client certificates allowed to connect.", rich_help_panel=OUTPUTS
    ),
    opcua_allow_anonymous: bool = typer.Option(
        False,
        "--opcua-allow-anonymous",
        help="Serve OPC UA without certificates (a closed network only).",
        rich_help_panel=OUTPUTS,
    ),
    reconnect_attempts: int = typer.Option(
        10, "--reconnect-attempts", help="Live sources: attempts to reconnect before giving up.", rich_help_panel=SOURCE
    ),
    show: bool = typer.Option(
        False, "--show", help="Show frames (and NG overlays) in a window.", rich_help_panel=HEALTH
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live dashboard.", rich_help_panel=HEALTH),
    loop: bool = typer.Option(False, "--loop", help="--video: start again at the end.", rich_help_panel=SOURCE),
    realtime: bool = typer.Option(
        False, "--realtime", help="--video: pace at the file's fps (late frames drop).", rich_help_panel=SOURCE
    ),
    web: Optional[str] = typer.Option(
        None, "--web", help="Serve the line-side page at HOST:PORT (a bare PORT listens on 127.0.0.1 only).",
        rich_help_panel=PAGE,
    ),
    web_users: Optional[Path] = typer.Option(
        None, "--web-users", help="JSON file of users (name, role viewer|operator, token): needed beyond loopback "
        "and for reviewing and refitting.", rich_help_panel=PAGE,
    ),
    web_cert: Optional[Path] = typer.Option(None, "--web-cert", help="TLS certificate (PEM): HTTPS.",
                                            rich_help_panel=PAGE),
    web_key: Optional[Path] = typer.Option(None, "--web-key", help="TLS private key (PEM).", rich_help_panel=PAGE),
    web_shifts: Optional[str] = typer.Option(
        None, "--web-shifts", help="Local times shifts start, e.g. 06:00,14:00,22:00: the page counts per shift.",
        rich_help_panel=PAGE,
    ),
) -> None:
    """Judge every frame OK, NG or NO-DECISION; log each one (or why it was dropped); tell the line."""


    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str, code: int) -> typer.Exit:
        err.print(Text("error: ", style="red") + Text(message))
        return typer.Exit(code)

    try:
        if sensitivity <= 0:
            raise ValueError(f"--sensitivity must be > 0, got {sensitivity}")
        camera_settings = CameraSettings(
            width=width,
            height=height,
            fps=fps,
            fourcc=fourcc,
            exposure_us=exposure_us,
            gain=gain,
            ae_lock=ae_lock,
            awb_lock=awb_lock,
        )
        genicam_settings = None
        if genicam is not None:
            genicam_settings = GenICamSettings(camera=None if genicam == "first" else genicam, trigger=genicam_trigger,
                                               exposure_us=exposure_us, gain=gain, pixel_format=pixel_format)
        spec = SourceSpec(
            genicam=genicam_settings,
            camera=camera,
            csi=csi,
            rtsp=rtsp,
            video=video,
            images=images,
            loop=loop,
            realtime=realtime,
            camera_settings=camera_settings,
            rtsp_latency_ms=rtsp_latency_ms,
        )
        mqtt_config = None
        if mqtt:
            password = mqtt_password_file.read_text().strip() if mqtt_password_file else None
            mqtt_config = MqttConfig(
                mqtt,
                password=password,
                ca_file=mqtt_ca,
                cert_file=mqtt_cert,
                key_file=mqtt_key,
                tls=mqtt_ca is not None,
                heartbeat_s=mqtt_heartbeat_s,
            )
        modbus_config = None
        if modbus:
            host, port = parse_modbus_target(modbus)
            modbus_config = ModbusConfig(
                host, port, modbus_unit, modbus_coil_base, modbus_register_base, pulse_ms=modbus_pulse_ms
            )
        opcua_config = None
        if opcua:
            opcua_config = OpcUaConfig(opcua, opcua_cert, opcua_key, opcua_trust, opcua_allow_anonymous)
            opcua_config.check()  # a bad combination is refused before the camera opens
        cfg = RunConfig(
            bundle=bundle,
            source=spec,
            log=log,
            save_ng=save_ng,
            sensitivity=sensitivity,
            backend=backend,
            reprobe=reprobe,
            threads=threads,
            max_frames=max_frames,
            webhook=webhook,
            mqtt=mqtt_config,
            show=show,
            quiet=quiet,
            reconnect=ReconnectPolicy(max_attempts=reconnect_attempts),
            log_policy=LogPolicy(max_bytes=int(log_max_mb * 1024 * 1024), keep=log_keep),
            evidence=EvidencePolicy(quota_mb=quota_mb, min_free_mb=min_free_mb, burst_keep=burst_keep),
            watchdog=WatchdogConfig(periods=watchdog_periods),
            max_invalid_in_row=max_invalid,
            modbus=modbus_config,
            opcua=opcua_config,
            trigger=TriggerConfig(trigger, deadline_ms) if trigger else None,
            web=WebConfig.parse(web, users=web_users, cert=web_cert, key=web_key,
                                shifts=tuple(web_shifts.split(",")) if web_shifts else ()) if web else None,
        )
        result, _ = execute(cfg, Console(stderr=quiet))
    except InvalidOutputAlarm as e:
        raise fail(str(e), EXIT_ALARM) from None
    except InferenceFailed as e:
        raise fail(str(e), EXIT_LOST) from None
    except (SlsgError, ValueError, RuntimeError, OSError) as e:  # the bundle, backend, source, log or NG folder
        raise fail(str(e), EXIT_SETUP) from None
    if result.gave_up:
        raise fail("the source was lost and did not come back; see the event log", EXIT_LOST)
